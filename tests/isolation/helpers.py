"""Jobs for the isolation tests: module-level functions a worker process can look up by name."""

from __future__ import annotations

import os
import time

from vlserve.errors import DocumentError


def echo(value: object) -> object:
    return value


def pid() -> int:
    return os.getpid()


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def spin(seconds: float) -> int:
    """Burn CPU (not wall-clock waiting) for ``seconds``."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1
    return count


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes << 20)
    return len(block)


def crash() -> None:
    os.abort()


def refuse(message: str) -> None:
    raise DocumentError(message, page=3)


def fail() -> None:
    raise KeyError("internal detail")


_KEPT: list[bytearray] = []


def leak(megabytes: int) -> int:
    """Allocate and keep ``megabytes`` (a library that never frees); returns this worker's pid."""
    block = bytearray(megabytes << 20)
    block[::4096] = b"x" * len(block[::4096])
    _KEPT.append(block)
    return os.getpid()


# The niceness this module was imported at (a worker preloading it: before any job ran).
IMPORTED_AT_NICE = os.getpriority(os.PRIO_PROCESS, 0)


def import_niceness() -> int:
    return IMPORTED_AT_NICE
