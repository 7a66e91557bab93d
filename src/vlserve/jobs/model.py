"""What a job is: its record, its statuses and the rules every store shares.

A job moves through these statuses (and no others)::

    queued ──claim──▶ running ──complete──▶ succeeded | failed | cancelled
      │   ◀─requeue──   │ (lease expired: back to queued, or failed after max_attempts,
      │                 │  or cancelled when a cancel was requested)
      └──cancel──▶ cancelled

The checks here run before a store touches storage, so a batch that fails them writes nothing.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from vlserve.errors import RequestError

__all__ = [
    "ANONYMOUS_OWNER",
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_LIST_LIMIT",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "STATUSES",
    "TERMINAL_STATUSES",
    "WORKER_DIED_CODE",
    "WORKER_DIED_MESSAGE",
    "Job",
    "JobStatus",
    "JobSummary",
    "check_lease",
    "check_list_args",
    "check_outcome",
    "check_status",
    "check_submission",
    "clamp_progress",
    "dump_json",
    "new_job_id",
    "owner_of",
    "task_of",
]

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: Final[tuple[JobStatus, ...]] = get_args(JobStatus)
TERMINAL_STATUSES: Final[frozenset[JobStatus]] = frozenset({"succeeded", "failed", "cancelled"})

#: The owner of jobs submitted while authentication is off (the key id is None).
ANONYMOUS_OWNER: Final = "anonymous"
#: A job whose worker died this many times (leases expired without completion) fails.
DEFAULT_MAX_ATTEMPTS: Final = 3
WORKER_DIED_CODE: Final = 5000
WORKER_DIED_MESSAGE: Final = "worker died repeatedly"
# Bounded so that the Redis queue score (priority and sequence in one double) stays exact.
MIN_PRIORITY: Final = -1000
MAX_PRIORITY: Final = 1000
MAX_LIST_LIMIT: Final = 1000


@dataclass
class Job:
    """One job as a store sees it.

    ``request`` is the body as submitted; ``result`` is the handler's envelope (succeeded only);
    ``error`` is ``{"code": int, "msg": str}`` (failed only). ``attempts`` counts how many times a
    worker has claimed the job, so it is 0 while first queued and is also the lease's fencing token.
    ``started_at`` is the start of the latest attempt. ``cancel_requested`` is set when a running
    job was asked to stop and its worker has not yet noticed.
    """

    id: str
    owner: str
    request: dict[str, Any]
    status: JobStatus
    priority: int
    lane: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: float
    batch_id: str | None
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        """True once the job reached a terminal status."""
        return self.status in TERMINAL_STATUSES

    @property
    def task(self) -> str | None:
        return task_of(self.request)


@dataclass
class JobSummary:
    """A job as listings show it: everything but the request and result bodies, which may be large
    (inline media) and are read only by ``JobStore.get``. ``size`` is the bytes the job's bodies
    take in the store (request, result and error JSON), which the per-key quota counts."""

    id: str
    owner: str
    status: JobStatus
    task: str | None
    priority: int
    lane: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    error: dict[str, Any] | None
    progress: float
    batch_id: str | None
    size: int
    cancel_requested: bool = False


def task_of(request: dict[str, Any]) -> str | None:
    """The task a job request names (``None`` when it names none)."""
    task = request.get("task")
    return task if isinstance(task, str) else None


def owner_of(key_id: str | None) -> str:
    """The owner string for an API key id; ``None`` (authentication off) is ``"anonymous"``."""
    if key_id is None:
        return ANONYMOUS_OWNER
    if not isinstance(key_id, str) or not key_id:
        raise ValueError("an owner is a non-empty string or None")
    return key_id


def new_job_id() -> str:
    """A fresh, unguessable job id (``job_`` + 24 hex digits)."""
    return "job_" + secrets.token_hex(12)


def dump_json(value: Any, what: str) -> str:
    """Compact JSON for storage; NaN and non-JSON values are refused with a RequestError.

    ASCII-only on purpose: a lone surrogate (valid in a JSON ``\\ud800`` escape) then stays an
    escape instead of failing to encode as UTF-8 in the database driver.
    """
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise RequestError(f"{what} is not valid JSON: {err}") from err


def check_submission(
    requests: list[dict[str, Any]], lane: str, priority: int, batch_id: str | None = None
) -> list[str]:
    """Validate a batch before anything is written; return each request as JSON text."""
    if batch_id is not None and (not isinstance(batch_id, str) or not batch_id):
        raise RequestError("a batch id is a non-empty string")
    if not isinstance(lane, str) or not lane:
        raise RequestError("a job lane is a non-empty string")
    # bool is an int subclass, but True as a priority is certainly a mistake.
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RequestError("a job priority is an integer")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise RequestError(f"a job priority is between {MIN_PRIORITY} and {MAX_PRIORITY}")
    if not isinstance(requests, list) or not requests:
        raise RequestError("submit at least one job request")
    bodies = []
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            raise RequestError(f"job request {index} is not a JSON object")
        bodies.append(dump_json(request, f"job request {index}"))
    return bodies


def check_list_args(limit: int, offset: int) -> None:
    """Refuse a page size outside 1..MAX_LIST_LIMIT or a negative offset."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
        raise RequestError(f"limit is between 1 and {MAX_LIST_LIMIT}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise RequestError("offset is a non-negative integer")


def check_status(status: str | None) -> None:
    """Refuse a status filter that is not one of the five statuses."""
    if status is not None and status not in STATUSES:
        raise RequestError(f"unknown job status {status!r}; one of {', '.join(STATUSES)}")


def check_outcome(result: dict[str, Any] | None, error: dict[str, Any] | None, cancelled: bool) -> None:
    """A completion carries exactly one of a result, an error or the cancelled flag."""
    if sum((result is not None, error is not None, cancelled)) != 1:
        raise ValueError("complete() takes exactly one of result=, error= or cancelled=True")
    if result is not None and not isinstance(result, dict):
        raise TypeError("a job result is a dict (the response envelope)")
    if error is not None and not (isinstance(error, dict) and {"code", "msg"} <= error.keys()):
        raise TypeError('a job error is a dict with "code" and "msg"')


def check_lease(lease_seconds: float) -> None:
    """A lease is a positive, finite number of seconds."""
    if not (isinstance(lease_seconds, int | float) and math.isfinite(lease_seconds) and lease_seconds > 0):
        raise ValueError("lease_seconds is a positive number")


def clamp_progress(progress: float | None) -> float | None:
    """Progress is a fraction; out-of-range reports are clamped rather than refused."""
    if progress is None or not math.isfinite(progress):
        return None
    return min(1.0, max(0.0, float(progress)))
