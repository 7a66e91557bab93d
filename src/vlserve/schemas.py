"""The wire contract of the task API (seed 002), shared by the server, the SDK and async jobs.

Request::

    {"task": "vqa", "images": ["https://…", "data:image/png;base64,…"], "text": "…",
     "options": {"max_tokens": 512, "temperature": 0.7, "top_p": 0.9, "stream": false}}

Response envelope::

    {"request_id": "req_…", "code": 0, "msg": "success",
     "result": {"answer": …, "confidence": 0.94,
                "metadata": {"processing_time_ms": 845, "activated_experts": 12,
                             "input_tokens": 217, "output_tokens": 45, …}}}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class InferOptions(BaseModel):
    """Generation options; unset ones take the task's defaults."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate (capped by the server).")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 = greedy.")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=8)
    stream: bool = False
    fps: float | None = Field(None, gt=0.0, le=8.0, description="Video frames sampled per second.")
    priority: int = Field(0, ge=-10, le=10, description="Higher runs first within a lane.")


class VideoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    start: float | None = Field(None, ge=0.0, description="Seconds into the video to start from.")
    end: float | None = Field(None, gt=0.0, description="Seconds into the video to stop at.")


class DocumentInput(BaseModel):
    """A PDF and the pages to read: ``first_page..last_page`` (1-based, inclusive)."""

    model_config = ConfigDict(extra="forbid")

    url: str
    first_page: int = Field(1, ge=1, description="First page to read (1-based).")
    last_page: int | None = Field(None, ge=1, description="Last page to read (default: the last one).")


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field(description="vqa, captioning, chart_parse, video_qa, doc_analyze, ocr, grounding, …")
    images: list[str] = Field(default_factory=list, description="http(s) URLs, data: URIs, base64 or local paths.")
    videos: list[str | VideoInput] = Field(default_factory=list)
    documents: list[str | DocumentInput] = Field(
        default_factory=list, description="PDF documents, same forms as images; {url, first_page, last_page} "
        "reads only those pages.")
    text: str = ""
    labels: list[str] = Field(default_factory=list, description="Optional per-image labels (e.g. view names).")
    options: InferOptions = Field(default_factory=InferOptions)


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    processing_time_ms: float
    activated_experts: int | None
    input_tokens: int
    output_tokens: int
    image_tokens: int = 0
    video_tokens: int = 0
    model: str
    finish_reason: str
    degraded: bool = False
    warnings: list[str] = Field(default_factory=list)


class InferResult(BaseModel):
    answer: Any
    confidence: float | None
    metadata: Metadata


class Envelope(BaseModel):
    request_id: str
    code: int = 0
    msg: str = "success"
    result: InferResult | None = None


class StreamToken(BaseModel):
    token: str
    index: int


class StreamFinal(BaseModel):
    answer: Any
    confidence: float | None = None
    metadata: Metadata
    request_id: str
    code: int = 0
    msg: str = "success"


class ErrorBody(BaseModel):
    request_id: str
    code: int
    msg: str
    result: None = None
