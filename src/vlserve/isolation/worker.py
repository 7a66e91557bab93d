"""The child side of an isolated worker: ``python -m vlserve.isolation.worker CONFIG``.

It runs one job at a time, sent by :class:`vlserve.isolation.pool.WorkerPool` over its stdin,
and answers on a private copy of its stdout (file descriptor 1 itself is pointed at stderr,
so a library that prints cannot corrupt the frames). Limits, set once at start and per job:

* ``RLIMIT_AS``: before each job the soft limit is set so the address space may grow by
  ``memory_bytes`` beyond the worker's current footprint, so a bomb fails with MemoryError (or
  the process dies) here, not in the server;
* ``RLIMIT_CPU``: the soft limit is moved to ``used + cpu_seconds`` before each job; passing it
  kills the process with SIGXCPU (the hard limit stays open so the next job can be given time);
* ``RLIMIT_NOFILE``: a few descriptors only, so a parser tricked into opening files or sockets
  runs out at once; ``RLIMIT_CORE`` 0: no core files of untrusted input on disk.

Frames are an 8-byte big-endian length and a pickle. A request is
``(module, qualname, args, kwargs)``; only module-level functions of the configured
modules (``vlserve`` by default) are run. The answer is
``("ok", value)``, ``("error", module, class, message, details)`` for a :class:`VlserveError`,
``("memory",)`` for MemoryError, or ``("failed", class name)`` for anything else.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import resource
import struct
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct(">QI")  # pickle length, number of out-of-band buffers
_LENGTH = struct.Struct(">Q")
_DEFAULT_MODULES = ("vlserve.",)
# Descriptors a job may hold open beyond stdin/stdout/stderr and what the preloaded libraries use.
_SPARE_DESCRIPTORS = 16


def encode_frame(value: Any) -> list[bytes | memoryview]:
    """``value`` as the parts of one frame: header, pickle, then each large buffer as raw bytes.

    Pickle protocol 5 hands contiguous arrays and byte buffers over "out of band", so pages and
    video tensors are written straight from their memory and read straight into theirs: no
    copy into (or out of) one big pickle string, which would double the peak memory.
    """
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    try:
        raws = [buffer.raw() for buffer in buffers]
    except BufferError:  # a non-contiguous buffer: send everything in band
        body, raws = pickle.dumps(value, protocol=5), []
    parts: list[bytes | memoryview] = [_HEADER.pack(len(body), len(raws)), body]
    for raw in raws:
        parts += [_LENGTH.pack(raw.nbytes), raw]
    return parts


def read_frame(stream: BinaryIO) -> Any:
    """One frame from ``stream`` (blocking), or EOFError when the other side is gone."""
    size, count = _HEADER.unpack(_read_exact(stream, _HEADER.size))
    body = _read_exact(stream, size)
    buffers = [_read_exact(stream, _LENGTH.unpack(_read_exact(stream, _LENGTH.size))[0]) for _ in range(count)]
    return pickle.loads(body, buffers=buffers)


def _read_exact(stream: BinaryIO, size: int) -> bytearray:
    data = bytearray(size)
    view = memoryview(data)
    filled = 0
    while filled < size:
        got = stream.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            raise EOFError
        filled += got
    return data


def write_frame(stream: BinaryIO, value: Any) -> None:
    for part in encode_frame(value):
        stream.write(part)
    stream.flush()


def _address_space() -> int:
    """Current virtual size in bytes (Linux); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _set_start_limits() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    open_now = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 8
    files = open_now + _SPARE_DESCRIPTORS
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or files < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))


def _give_memory(memory_bytes: int) -> None:
    """Let this job grow the address space by ``memory_bytes`` from where it is now.

    Per job, not once: memory a previous job left mapped (allocator caches) must not eat into the
    next job's allowance. Only the soft limit moves; it is what allocations fail against.
    """
    if memory_bytes <= 0:
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + memory_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _give_cpu(seconds: float) -> None:
    if seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + seconds) + 1  # whole seconds: round up, never below what was asked
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _run(request: tuple[str, str, tuple[Any, ...], dict[str, Any]], modules: tuple[str, ...]) -> tuple[Any, ...]:
    module_name, qualname, args, kwargs = request
    if not module_name.startswith(modules) or "." in qualname:
        return ("failed", "refused")
    function = getattr(importlib.import_module(module_name), qualname)
    try:
        return ("ok", function(*args, **kwargs))
    except MemoryError:
        return ("memory",)
    except Exception as err:  # noqa: BLE001 - every failure is reported to the parent, typed
        from vlserve.errors import VlserveError

        if isinstance(err, VlserveError):
            return ("error", type(err).__module__, type(err).__qualname__, err.message, _plain(err.details))
        return ("failed", type(err).__name__)


def _plain(details: dict[str, Any]) -> dict[str, Any]:
    """Details that survive pickling; anything odd is dropped rather than failing the answer."""
    kept: dict[str, Any] = {}
    for key, value in details.items():
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001
            continue
        kept[key] = value
    return kept


def _lower_priority(config: dict[str, Any]) -> None:
    """Run at the niceness the pool asked for (the parent usually set it already, just after start)."""
    target = config.get("nice_target")
    if target is None:
        if int(config.get("nice", 0)) > 0:
            os.nice(int(config["nice"]))
        return
    if os.getpriority(os.PRIO_PROCESS, 0) < int(target):
        os.setpriority(os.PRIO_PROCESS, 0, int(target))


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    # Our answers go to a private descriptor; fd 1 (what C libraries and print use) goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    _lower_priority(config)  # before the imports below, which cost CPU on every (re)start
    for name in config.get("preload", []):
        importlib.import_module(name)
    _set_start_limits()
    memory_bytes = int(config.get("memory_bytes", 0))
    cpu_seconds = float(config.get("cpu_seconds", 0))
    modules = tuple(config.get("modules", _DEFAULT_MODULES))
    write_frame(answers, ("ready", os.getpid()))
    while True:
        try:
            request = read_frame(requests)
        except EOFError:
            return
        _give_cpu(cpu_seconds)
        _give_memory(memory_bytes)
        try:
            answer = _run(request, modules)
        except MemoryError:
            answer = ("memory",)
        try:
            write_frame(answers, answer)
        except MemoryError:
            write_frame(answers, ("memory",))
        except (pickle.PicklingError, TypeError, AttributeError):
            write_frame(answers, ("failed", "unpicklable result"))


if __name__ == "__main__":
    main(sys.argv)
