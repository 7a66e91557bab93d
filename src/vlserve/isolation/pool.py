"""A small pool of worker processes that run one untrusted-input job each, under hard limits.

Why processes: PDFium and FFmpeg parse bytes that anyone can send. In a thread of the server a
hostile file can hold a global lock for seconds, grow memory by gigabytes or crash the process;
in a worker it can only exhaust the worker's own limits. A job that passes its wall-clock
deadline is killed (SIGKILL) and its worker replaced; a job that passes its CPU-time limit is
killed by the kernel (RLIMIT_CPU); one that asks for more memory than ``memory_bytes`` fails
inside the worker (RLIMIT_AS). The caller gets one of :class:`WorkerTimeout`,
:class:`WorkerOutOfMemory` or :class:`WorkerCrashed` and translates it into its own coded
error; other jobs, in other workers, never notice.

Workers are plain ``python -m vlserve.isolation.worker`` subprocesses (not ``fork``: the server
has threads and possibly torch loaded), started lazily, kept for ``max_jobs`` jobs, and fed over
pipes (see ``worker`` for the frame format). Each pool has its own dispatch threads, one per
worker, so a pool's queue never delays another pool's jobs or the default executor.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import pickle
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from vlserve.errors import VlserveError
from vlserve.isolation.worker import _HEADER, _LENGTH, encode_frame

__all__ = [
    "IsolationError",
    "WorkerCrashed",
    "WorkerAbandoned",
    "WorkerLimits",
    "WorkerOutOfMemory",
    "WorkerPool",
    "WorkerTimeout",
]

P = ParamSpec("P")
T = TypeVar("T")

_log = logging.getLogger("vlserve.isolation")
_START_TIMEOUT = 30.0  # seconds for a fresh worker to import its preloads and say "ready"
_PIPE_BYTES = 1 << 20
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding the vlserve package
_POLL = 0.1  # seconds between checks whether the caller gave up on a running job


class IsolationError(Exception):
    """A job did not finish inside its worker; ``reason`` says why (for logs, not for users)."""

    reason = "failed"


class WorkerTimeout(IsolationError):
    """The job passed its wall-clock deadline or its CPU-time limit and its worker was killed."""

    reason = "timeout"


class WorkerOutOfMemory(IsolationError):
    """The job asked for more memory than the worker may have."""

    reason = "memory"


class WorkerCrashed(IsolationError):
    """The worker died or the job failed with an error that is not a :class:`VlserveError`."""

    reason = "crashed"


class WorkerAbandoned(IsolationError):
    """The caller stopped waiting (its task was cancelled); the worker was killed mid-job."""

    reason = "abandoned"


@dataclass(frozen=True)
class WorkerLimits:
    """Hard limits of one job; 0 turns a limit off (tests only: production keeps all three).

    ``memory_bytes`` is what a job may add to the worker's address space beyond its idle
    footprint (RLIMIT_AS); ``cpu_seconds`` its CPU time (all threads, RLIMIT_CPU);
    ``wall_seconds`` the deadline from the moment the worker receives the job.
    """

    wall_seconds: float = 20.0
    cpu_seconds: float = 20.0
    memory_bytes: int = 1 << 30
    preload: tuple[str, ...] = field(default_factory=tuple)
    max_jobs: int = 500  # jobs before a worker is replaced anyway (bounds slow leaks in C libraries)
    modules: tuple[str, ...] = ("vlserve.",)  # whose functions a worker may run (tests add their own)
    # Scheduling niceness added to workers: a hostile file burning its CPU allowance yields the
    # cores to the server's own threads (the engine, HTTP) instead of slowing everyone's requests.
    nice: int = 0


class _Worker:
    """One child process and its pipes; used by one dispatch thread at a time."""

    def __init__(self, limits: WorkerLimits) -> None:
        nice_target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + limits.nice) if limits.nice > 0 else None
        config = {
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "preload": list(limits.preload),
            "modules": list(limits.modules),
            "nice": limits.nice,
            # Absolute, from this thread's own: the worker's imports at start-up (a second of CPU,
            # again after every kill) already run at it, not only its jobs.
            "nice_target": nice_target,
        }
        env = dict(os.environ)
        # Few malloc arenas: each thread's arena reserves 64 MiB of address space, which would
        # count against RLIMIT_AS without holding any memory.
        # A fixed mmap threshold: large blocks are always mapped and unmapped when freed, instead of
        # glibc raising the threshold and keeping freed images on the heap between jobs.
        env.update(MALLOC_ARENA_MAX="2", MALLOC_MMAP_THRESHOLD_="262144", OMP_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1")
        # The worker imports vlserve from wherever this process did (a checkout on sys.path included).
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vlserve.isolation.worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        if nice_target is not None:  # at once: the worker is importing its libraries now
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self.process.pid, nice_target)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin
        self._fd = self.process.stdout.fileno()
        for pipe in (self._fd, self._stdin.fileno()):
            _widen(pipe)
        os.set_blocking(self._fd, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self.jobs = 0
        # Answers are bounded by what the worker may hold (its allowance plus its idle footprint).
        self.max_answer_bytes = limits.memory_bytes + (256 << 20) if limits.memory_bytes > 0 else 1 << 40
        try:
            ready = self.receive(time.monotonic() + _START_TIMEOUT)
        except BaseException:
            self.kill()  # never leave a half-started process behind
            raise
        if not (isinstance(ready, tuple) and ready[:1] == ("ready",)):
            self.kill()
            raise WorkerCrashed("the worker did not start")
        self.baseline = self.address_space()

    def address_space(self) -> int:
        """The worker's virtual size in bytes (Linux; 0 where unknown)."""
        try:
            with open(f"/proc/{self.process.pid}/statm", encoding="ascii") as fh:
                return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def bloated(self, memory_bytes: int) -> bool:
        """Whether jobs left the worker holding more than half a job's allowance beyond its start."""
        return memory_bytes > 0 and self.address_space() > self.baseline + memory_bytes // 2

    def send(self, request: tuple[Any, ...]) -> None:
        try:
            for part in encode_frame(request):
                self._stdin.write(part)
            self._stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise WorkerCrashed("the worker is gone") from err

    def receive(self, deadline: float, abandoned: threading.Event | None = None) -> Any:
        size, count = _HEADER.unpack(self._read(_HEADER.size, deadline, abandoned))
        budget = self.max_answer_bytes - size
        body = self._read(size, deadline, abandoned) if budget >= 0 else self._oversized()
        buffers = []
        for _ in range(count):
            (length,) = _LENGTH.unpack(self._read(_LENGTH.size, deadline, abandoned))
            budget -= length
            buffers.append(self._read(length, deadline, abandoned) if budget >= 0 else self._oversized())
        # The buffers become the arrays' memory as they are (bytearrays: writable, no copy).
        return pickle.loads(body, buffers=buffers)

    def _oversized(self) -> bytearray:
        # A worker cannot legitimately answer with more than it may hold; never allocate it here.
        self.kill()
        raise WorkerOutOfMemory("the worker's answer is larger than its memory allowance")

    def _read(self, size: int, deadline: float, abandoned: threading.Event | None) -> bytearray:
        """Exactly ``size`` bytes into one new buffer, by the deadline."""
        data = bytearray(size)
        view = memoryview(data)
        filled = 0
        while filled < size:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(min(left, _POLL)):
                if time.monotonic() >= deadline:
                    raise WorkerTimeout("the job passed its deadline")
                if abandoned is not None and abandoned.is_set():
                    raise WorkerAbandoned("the caller no longer waits for the job")
                continue
            try:
                got = os.readv(self._fd, [view[filled:]])
            except BlockingIOError:
                continue
            if not got:
                raise self._death()
            filled += got
        return data

    def _death(self) -> IsolationError:
        """Why the worker closed its pipe: the kernel's CPU limit, or a crash."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return WorkerCrashed("the worker stopped answering")
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            # SIGKILL without us: the kernel's hard CPU limit or the OOM killer; both are limits.
            return WorkerTimeout(f"the worker was killed by signal {-code}")
        return WorkerCrashed(f"the worker exited with status {code}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._selector.close()


def _widen(fd: int) -> None:
    """1 MiB pipe buffers (Linux) instead of 64 KiB: rendered pages cross in far fewer wake-ups."""
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)


class _Dispatcher:
    """``threads`` daemon threads running submitted calls in FIFO order.

    Not a ThreadPoolExecutor: its threads are joined when the interpreter exits, so a job still
    running then would hold the exit for its whole deadline. Daemon threads are not waited for, and
    the pool's atexit hook kills the workers they wait on.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [threading.Thread(target=self._serve, name=f"{name}-{k}", daemon=True) for k in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn, args))
        return future

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while queued
            try:
                future.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(err)

    def shutdown(self) -> None:
        """Cancel what is queued and let the threads end after their current call."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)


class WorkerPool:
    """``workers`` isolated processes running jobs under ``limits``; jobs queue in FIFO order.

    ``submit(fn, *args, **kwargs)`` runs the module-level function ``fn`` (a ``vlserve``
    function: it is looked up by name in the worker) and returns a Future of its result;
    ``run`` is the blocking form and ``arun`` the awaitable one. A :class:`VlserveError`
    raised by ``fn`` is raised again, same class and message, in the caller.
    """

    def __init__(self, name: str, workers: int, limits: WorkerLimits) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.name = name
        self.workers = workers
        self.limits = limits
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(workers):
            self._idle.put(None)  # a slot whose process starts on first use
        self._dispatch = _Dispatcher(workers, f"vlserve-{name}")
        self._all: weakref.WeakSet[_Worker] = weakref.WeakSet()
        self._abandon: dict[Future[Any], threading.Event] = {}
        self._closed = False
        _POOLS.add(self)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` for a worker; the Future holds its result or error.

        Cancelling the Future while the job runs kills its worker (a fresh one takes its place).
        """
        if self._closed:
            raise RuntimeError(f"the {self.name} worker pool is closed")
        request = (fn.__module__, fn.__qualname__, args, kwargs)
        abandoned = threading.Event()
        future = self._dispatch.submit(self._run, request, abandoned)
        future.add_done_callback(lambda f: abandoned.set() if f.cancelled() else None)
        self._abandon[future] = abandoned
        future.add_done_callback(lambda f: self._abandon.pop(f, None))
        return future

    def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Blocking form of :meth:`submit`."""
        return self.submit(fn, *args, **kwargs).result()

    async def arun(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Awaitable form of :meth:`submit`; the event loop's threads are not used.

        If the awaiting task is cancelled (say, its client went away) a running job's worker is
        killed within ``0.1`` s instead of finishing work nobody will read.
        """
        future = self.submit(fn, *args, **kwargs)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            abandoned = self._abandon.get(future)
            if abandoned is not None:
                abandoned.set()
            raise

    def _run(self, request: tuple[Any, ...], abandoned: threading.Event) -> Any:
        worker = self._idle.get()
        try:
            if worker is None or not worker.alive():
                worker = _Worker(self.limits)
                self._all.add(worker)
            worker.jobs += 1
            worker.send(request)
            wall = self.limits.wall_seconds
            answer = worker.receive(time.monotonic() + wall if wall > 0 else float("inf"), abandoned)
            if answer[0] in ("memory", "failed") or worker.bloated(self.limits.memory_bytes):
                # An allocation failed or a library raised midway: its state is not to be trusted.
                # Or memory stayed mapped after the job: the next job's allowance starts from a fresh worker.
                worker.kill()
                worker = None
        except BaseException as err:
            if worker is not None:
                worker.kill()
            worker = None
            if isinstance(err, IsolationError):
                _log.warning("%s worker stopped: %s (%s)", self.name, err.reason, err)
            raise
        finally:
            if worker is not None and (worker.jobs >= self.limits.max_jobs or self._closed):
                worker.kill()
                worker = None
            self._idle.put(worker)
        return _unpack(answer)

    def pids(self) -> list[int]:
        """Process ids of this pool's live workers (for metrics and tests)."""
        return sorted(w.process.pid for w in list(self._all) if w.alive())

    def warm(self) -> None:
        """Start the worker processes now, in the background, so the first jobs do not wait for them."""
        for _ in range(self.workers):
            self._dispatch.submit(self._warm_one)

    def _warm_one(self) -> None:
        worker = self._idle.get()
        try:
            if worker is None and not self._closed:
                worker = _Worker(self.limits)
                self._all.add(worker)
        except IsolationError as err:
            _log.warning("%s worker did not start: %s", self.name, err)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop accepting jobs and kill every worker (running jobs fail with an IsolationError)."""
        self._closed = True
        for worker in list(self._all):
            worker.kill()
        self._dispatch.shutdown()


def _unpack(answer: Any) -> Any:
    kind = answer[0]
    if kind == "ok":
        return answer[1]
    if kind == "error":
        _tag, module, qualname, message, details = answer
        raise _rebuild(module, qualname, message, details)
    if kind == "memory":
        raise WorkerOutOfMemory("the job ran out of memory")
    raise WorkerCrashed(f"the job failed: {answer[1] if len(answer) > 1 else 'unknown'}")


def _rebuild(module: str, qualname: str, message: str, details: dict[str, Any]) -> Exception:
    """The worker's VlserveError as the same class here; unknown classes become WorkerCrashed."""
    target = sys.modules.get(module)
    if target is None and module.startswith("vlserve."):
        import importlib

        try:
            target = importlib.import_module(module)
        except ImportError:
            target = None
    cls = getattr(target, qualname, None) if target is not None else None
    if not (isinstance(cls, type) and issubclass(cls, VlserveError)):
        return WorkerCrashed(f"the job failed with {qualname}")
    error = cls.__new__(cls)
    VlserveError.__init__(error, message, **details)
    if hasattr(cls, "retry_after") or "retry_after" in details:
        error.retry_after = float(details.get("retry_after", 1.0))  # type: ignore[attr-defined]
    return error


_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()
