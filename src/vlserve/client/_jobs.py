"""Async jobs in the SDK: what ``/jobs`` answers, as typed objects the sync and async clients share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from vlserve import errors
from vlserve.client._base import Answer, answer_from, api_error, build_payload

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass
class JobRequest:
    """One request of a job batch: the same inputs as :meth:`Client.ask` (files travel as data URIs)."""

    task: str = "vqa"
    question: str = ""
    images: Iterable[Any] | None = None
    videos: Iterable[Any] | None = None
    documents: Iterable[Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return build_payload(self.task, self.question, self.images, self.videos, self.documents, False, self.options)


@dataclass
class Job:
    """A job as the server last reported it.

    ``status`` is queued, running, succeeded, failed or cancelled. ``answer`` is set once it
    succeeded (the same :class:`Answer` as ``ask``), ``error`` once it failed: the typed exception
    of its code, not raised (``raise job.error`` if you want it to be).
    """

    id: str
    status: str
    task: str | None = None
    lane: str | None = None
    priority: int = 0
    progress: float = 0.0
    attempts: int = 0
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    batch_id: str | None = None
    answer: Answer | None = None
    error: errors.VlserveError | None = None

    @property
    def done(self) -> bool:
        """True once the job succeeded, failed or was cancelled: it will not change any more."""
        return self.status in TERMINAL


JobRef = str | Job


def job_from(data: dict[str, Any]) -> Job:
    """A :class:`Job` from one entry of a ``/jobs`` answer (the 202 answer carries fewer fields)."""
    result, error = data.get("result"), data.get("error")
    return Job(
        id=data["id"], status=data["status"], task=data.get("task"), lane=data.get("lane"),
        priority=int(data.get("priority") or 0), progress=float(data.get("progress") or 0.0),
        attempts=int(data.get("attempts") or 0), created_at=data.get("created_at"),
        started_at=data.get("started_at"), finished_at=data.get("finished_at"), batch_id=data.get("batch_id"),
        answer=answer_from(result) if result else None,
        error=api_error(int(error["code"]), str(error["msg"]), status=200, request_id=f"job_{data['id']}")
        if error else None,
    )


@dataclass
class JobEvent:
    """One event of :meth:`Client.job_events`: ``kind`` is ``"progress"`` (``job`` has its id,
    status, progress and attempts) or ``"final"`` (``job`` as :meth:`Client.get_job` returns it,
    finished); ``final`` is always the last one."""

    kind: str
    job: Job


def job_event(name: str, data: Any) -> JobEvent:
    """A :class:`JobEvent` from one SSE event of ``/jobs/{id}/events``; ``error`` is raised typed."""
    if name in ("progress", "final"):
        return JobEvent(name, job_from(data))
    if name == "error":
        raise api_error(int(data["code"]), str(data["msg"]), status=200, request_id=data.get("request_id"))
    raise errors.VlserveError(f"unexpected job event {name!r}")


def job_bodies(requests: Iterable[JobRequest | dict[str, Any]]) -> list[dict[str, Any]]:
    """``/jobs`` bodies: a :class:`JobRequest` is encoded, a dict is sent as the ``/infer`` body it is."""
    return [r.payload() if isinstance(r, JobRequest) else dict(r) for r in requests]


def job_path(job: JobRef) -> str:
    """``/jobs/{id}``, the id quoted so that no id can reach another route."""
    return "/jobs/" + quote(job.id if isinstance(job, Job) else job, safe="")


def list_params(status: str | None, limit: int, offset: int) -> dict[str, Any]:
    return {"limit": limit, "offset": offset, **({"status": status} if status is not None else {})}
