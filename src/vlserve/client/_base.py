"""What the sync and async clients share: payloads, error decoding, retry timing, SSE parsing."""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve import errors

DEFAULT_TIMEOUT = 30.0
VIDEO_TIMEOUT = 120.0
RETRY_STATUSES = {429, 500, 502, 503, 504}
RETRY_CODES = {2001, 4029}


@dataclass
class Answer:
    """A successful ``/infer`` result."""

    request_id: str
    answer: Any
    confidence: float | None
    metadata: dict[str, Any]
    code: int = 0
    msg: str = "success"


@dataclass
class Token:
    token: str
    index: int


@dataclass
class Final:
    request_id: str
    answer: Any
    confidence: float | None
    metadata: dict[str, Any] = field(default_factory=dict)


StreamItem = Token | Final

_BY_CODE: dict[int, type[errors.VlserveError]] = {}


def _collect(cls: type[errors.VlserveError]) -> None:
    _BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(errors.VlserveError)


def api_error(code: int, message: str, *, status: int, request_id: str | None,
              retry_after: float | None = None) -> errors.VlserveError:
    """The server's error as the same typed exception the server raised (``err.code``, ``.status``)."""
    cls = _BY_CODE.get(code, errors.VlserveError)
    err = cls.__new__(cls)
    errors.VlserveError.__init__(err, message)
    err.status = status  # type: ignore[attr-defined]
    err.request_id = request_id  # type: ignore[attr-defined]
    err.retry_after = retry_after  # type: ignore[attr-defined]
    if cls is errors.VlserveError:
        err.code = code  # type: ignore[misc]
    return err


def source_ref(source: str | os.PathLike[str] | bytes) -> str:
    """URLs and data URIs pass through; local files and raw bytes travel as data URIs."""
    if isinstance(source, bytes):
        return "data:application/octet-stream;base64," + base64.b64encode(source).decode()
    text = os.fspath(source)
    if text.startswith(("http://", "https://", "data:")):
        return text
    path = Path(text).expanduser()
    if path.is_file():
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()
    return text  # a server-side path (inside the server's configured root) or base64 already


def build_payload(task: str, question: str, images: Iterable[Any] | None, videos: Iterable[Any] | None,
                  documents: Iterable[Any] | None, stream: bool, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": task,
        "images": [source_ref(i) for i in images or []],
        "videos": [source_ref(v) for v in videos or []],
        # A document may be {"url": ..., "first_page": ..., "last_page": ...}: only those pages are read.
        "documents": [{**d, "url": source_ref(d["url"])} if isinstance(d, dict) else source_ref(d)
                      for d in documents or []],
        "text": question,
        "options": {**{k: v for k, v in options.items() if v is not None}, "stream": stream},
    }


def retry_delay(attempt: int, retry_after: str | None, *, base: float, cap: float) -> float:
    """Exponential backoff with full jitter; a server's ``Retry-After`` wins when given."""
    if retry_after:
        try:
            return min(cap, max(0.0, float(retry_after)))
        except ValueError:
            pass
    return random.uniform(0, min(cap, base * 2**attempt))


def decode_error(status: int, body: bytes, headers: Any) -> errors.VlserveError:
    try:
        data = json.loads(body)
        code, message, request_id = int(data["code"]), str(data["msg"]), data.get("request_id")
    except (ValueError, KeyError, TypeError):
        code, message, request_id = 5000, f"HTTP {status}: {body[:200]!r}", None
    retry_after = headers.get("retry-after")
    return api_error(code, message, status=status, request_id=request_id,
                     retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None)


def answer_from(data: dict[str, Any]) -> Answer:
    result = data.get("result") or {}
    return Answer(request_id=data["request_id"], answer=result.get("answer"), confidence=result.get("confidence"),
                  metadata=result.get("metadata", {}), code=data.get("code", 0), msg=data.get("msg", "success"))


class SSEDecoder:
    """Turns SSE lines into ``(event, data)`` pairs."""

    def __init__(self) -> None:
        self.event: str | None = None
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line == "":
            if not self.data:
                return None
            name, payload = self.event or "message", "\n".join(self.data)
            self.event, self.data = None, []
            return name, json.loads(payload)
        if line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        return None


def stream_item(name: str, data: Any) -> StreamItem:
    if name == "token":
        return Token(token=data["token"], index=data["index"])
    if name == "final":
        return Final(request_id=data.get("request_id", ""), answer=data["answer"],
                     confidence=data.get("confidence"), metadata=data.get("metadata", {}))
    if name == "error":
        raise api_error(int(data["code"]), data["msg"], status=200, request_id=data.get("request_id"))
    raise errors.VlserveError(f"unexpected stream event {name!r}")


def timeout_for(task: str, videos: Iterable[Any] | None, default: float, video: float) -> float:
    return video if task == "video_qa" or list(videos or []) else default
