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

from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlserve import sampling


class FieldBounds(TypedDict, total=False):
    """The keywords :func:`field_range` passes to ``Field`` (a TypedDict, so mypy checks each one)."""

    gt: float
    ge: float
    le: float


def field_range(r: sampling.Range) -> FieldBounds:
    """A documented range as pydantic bounds (shown in OpenAPI)."""
    if r.low_open:
        return {"gt": r.low, "le": r.high}
    return {"ge": r.low, "le": r.high}


class KnownDimension(BaseModel):
    """One true length of the object, naming the spec's parameter it fixes (docs/recon3d.md#refinement)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    parameter: str = Field(min_length=1, max_length=200, pattern=r"^[^=\x00-\x1f]+$",
                           description="The spec's length, 'part.field' or 'field' (e.g. 'f.diameter').")
    mm: float = Field(gt=0, le=1_000_000, description="Its true value in millimetres.")


class CharucoOption(BaseModel):
    """A printed ChArUco board lying beside the object (OpenCV's ``CharucoBoard`` layout); the
    marker must be smaller than its square, the board at most 2 m long and its dictionary large
    enough for its markers (checked when the job is submitted, 4000)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    squares_x: int = Field(ge=3, le=30, description="Chessboard squares across (columns).")
    squares_y: int = Field(ge=3, le=30, description="Chessboard squares down (rows).")
    square_mm: float = Field(gt=0, le=2000, description="Side of one chessboard square, mm.")
    marker_mm: float = Field(gt=0, le=2000, description="Side of the ArUco markers in the white squares, mm.")
    dictionary: str = Field("DICT_5X5_100", min_length=1, max_length=40,
                            description="OpenCV's predefined ArUco dictionary, e.g. DICT_5X5_100.")


class RefineOption(BaseModel):
    """multiview_3d as a job: fit the model's spec to the photos (SfM); exactly one source of scale."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    marker_size_mm: float | None = Field(None, gt=0, le=2000, description="Side of the printed ArUco "
                                         "marker's black square lying beside the object, mm.")
    charuco: CharucoOption | None = None
    known_dimension: KnownDimension | None = None

    @model_validator(mode="after")
    def _one_scale(self) -> RefineOption:
        if sum(x is not None for x in (self.marker_size_mm, self.charuco, self.known_dimension)) != 1:
            raise ValueError("give exactly one of marker_size_mm, charuco and known_dimension")
        return self


class InferOptions(BaseModel):
    """Generation options; unset ones take the task's defaults. The ranges are those of
    :mod:`vlserve.sampling`; stop strings are bounded by the server's limits."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_tokens: int | None = Field(None, ge=1, description="Most tokens to generate (capped by the server).")
    temperature: float | None = Field(None, **field_range(sampling.TEMPERATURE), description="0 = greedy.")
    top_p: float | None = Field(None, **field_range(sampling.TOP_P))
    top_k: int | None = Field(None, **field_range(sampling.TOP_K), description="0 = off.")
    repetition_penalty: float | None = Field(None, **field_range(sampling.REPETITION_PENALTY))
    presence_penalty: float | None = Field(None, **field_range(sampling.PRESENCE_PENALTY))
    seed: int | None = Field(None, **field_range(sampling.SEED))
    stop: list[str] = Field(default_factory=list, description="Stop strings (limits.max_stop_strings, "
                            "limits.max_stop_chars).")
    stream: bool = False
    fps: float | None = Field(None, gt=0.0, le=8.0, description="Video frames sampled per second.")
    priority: int = Field(0, ge=-10, le=10, description="Higher runs first within a lane.")
    formats: list[str] | None = Field(None, max_length=8, description="multiview_3d: files to write (glb, stl, obj, "
                                      "ply, step, scad, py, png); default recon3d.default_formats, without STEP.")
    refine: RefineOption | None = Field(None, description="multiview_3d, as a job only (POST /jobs): fit the "
                                        "spec's dimensions to the photos by structure-from-motion "
                                        "(recon3d.refine.*).")
    json_schema: dict[str, Any] | None = Field(None, description="extract: the JSON Schema the answer must be valid "
                                               "against (limits.max_schema_bytes, limits.max_schema_depth).")
    history: list[str | dict[str, Any]] | None = Field(None, description="gui_action: the steps taken so far, "
                                                       "oldest first: strings or earlier answers' `call` objects "
                                                       "(limits.max_history_steps, limits.max_history_chars).")
    render: bool = Field(False, description="visual_coding: also render the page to a PNG artefact (rendering.*).")


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
    cached: bool = Field(False, description="True: answered from the response cache (docs/cache.md).")


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
