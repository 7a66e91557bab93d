"""One typed settings object: every limit of the service is named here.

Values come from (later wins) the defaults below, a config file (``--config FILE``, TOML, JSON or
YAML) and environment variables prefixed ``VLSERVE_`` with ``__`` between nested names, e.g.
``VLSERVE_LIMITS__MAX_IMAGES=4`` or ``VLSERVE_MODEL=/models/Qwen3-VL-8B-Instruct``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

VideoContainer = Literal["mp4", "matroska", "avi"]


def _all_video_containers() -> list[VideoContainer]:
    """Every container ``Limits.video_containers`` may name (its default)."""
    return ["mp4", "matroska", "avi"]


class Limits(BaseModel):
    max_body_bytes: int = 64 * 1024 * 1024
    max_images: int = 16
    max_videos: int = 2
    max_documents: int = 2
    max_text_chars: int = Field(32_000, ge=1, description="Characters of all caller text together: instruction, "
                                "chat messages, system prompts, tool results and definitions, labels (4000).")
    max_stop_strings: int = Field(8, ge=0, description="Stop strings per request (4000).")
    max_stop_chars: int = Field(64, ge=1, description="Characters of one stop string (4000).")
    max_schema_bytes: int = Field(32 * 1024, ge=64, description="Size of a caller's JSON schema or tool definitions, "
                                  "serialised (4000).")
    max_schema_depth: int = Field(16, ge=1, description="Nesting depth of a caller's JSON schema (4000).")
    max_tools: int = Field(32, ge=0, description="Tools (functions) in one chat request (4000).")
    max_history_steps: int = Field(16, ge=0, description="gui_action: previous steps in `options.history` (4000).")
    max_history_chars: int = Field(8000, ge=0, description="gui_action: characters of `options.history` together; "
                                   "they also count against max_text_chars (4000).")
    max_tokens: int = 4096
    default_max_tokens: int = 512
    max_input_bytes: int = 20 * 1024 * 1024
    # Pixel budgets (see vlserve.media.VisionSettings for what each one bounds).
    min_pixels: int = 64 * 32 * 32
    max_pixels: int = 1280 * 32 * 32
    max_image_pixels: int = 64_000_000
    max_video_seconds: float = 30.0
    video_policy: Literal["reject", "truncate"] = "reject"
    video_fps: float = 2.0
    video_max_frames: int = 64
    video_max_pixels: int = 256 * 32 * 32
    video_total_pixels: int = 8192 * 32 * 32
    pdf_dpi: int = 144
    max_pdf_pages: int = 8
    pdf_policy: Literal["reject", "truncate"] = "reject"
    # Decoding bounds and isolation of untrusted parsers (docs/inputs.md, docs/media.md).
    image_decode_pixels: int = Field(default=4096 * 4096, ge=1, description="JPEGs above this many pixels are decoded "
                                     "at 1/2, 1/4 or 1/8 scale (draft mode) to at most this many (1001 beyond).")
    max_image_frames: int = Field(default=1000, ge=1,
                                  description="Frames (GIF/WEBP/TIFF pages) an image may declare (1001).")
    pdf_max_page_pixels: int = Field(default=4096 * 4096, ge=1, description="Pixels of one rendered PDF page.")
    pdf_max_document_pixels: int = Field(default=8 * 2048 * 2048, ge=1, description="Pixels of all rendered pages "
                                         "of one document together: pages render smaller to fit.")
    pdf_workers: int = Field(default=2, ge=1,
                             description="Worker processes rendering PDFs (separate from image decoding).")
    pdf_timeout_seconds: float = Field(default=15.0, gt=0,
                                       description="Wall-clock and CPU seconds one PDF may take (1004).")
    pdf_memory_bytes: int = Field(default=1 << 30, ge=64 << 20, description="Memory one PDF render may use (1004).")
    video_containers: list[VideoContainer] = Field(
        default_factory=_all_video_containers,
        description="Video containers accepted, recognised from the bytes before FFmpeg sees them (1003).")
    worker_nice: int = Field(default=10, ge=0, le=19, description="Niceness of the PDF and video worker "
                             "processes: their CPU-heavy parsing yields the cores to the server's engine and HTTP.")
    video_workers: int = Field(default=2, ge=1, description="Worker processes probing and decoding videos.")
    video_timeout_seconds: float = Field(default=60.0, gt=0,
                                         description="Wall-clock seconds one video may take (1003).")
    video_memory_bytes: int = Field(default=2 << 30, ge=64 << 20, description="Memory one video decode may use (1003).")
    image_isolate_pixels: int = Field(default=8 * 1024 * 1024, ge=1, description="Images decoding to more pixels "
                                      "than this, and every 16-bit or float image, decode in the isolated image "
                                      "workers (niced, hard limits) and resize on a niced thread: heavy pixel work "
                                      "yields the CPU to the engine and to everyone's small images.")
    image_workers: int = Field(default=2, ge=1, description="Worker processes decoding heavy images.")
    image_timeout_seconds: float = Field(default=15.0, gt=0, description="Wall-clock and CPU seconds one heavy image "
                                         "decode may take (1001).")
    image_memory_bytes: int = Field(default=2 << 30, ge=64 << 20, description="Memory one heavy image decode may "
                                    "use (1001).")
    image_encode_ahead_tokens: int = Field(default=512, ge=0, description="A request with at least this many image "
                                           "tokens runs its vision tower on a niced thread while it waits to join "
                                           "the batch (embedded engine, vision-encoder cache on), not inside the "
                                           "batch's prefill, which stalls every running request; 0: never.")
    # Long-video tasks (video_summary, video_search: async jobs only; docs/media.md#long-videos).
    long_video_max_seconds: float = Field(default=7200.0, gt=0, description="Longest video, or start/end range, "
                                          "that video_summary and video_search analyse (1002).")
    long_video_fps: float = Field(default=2.0, gt=0, le=30, description="Most frames per second a long-video task "
                                  "samples; longer videos get fewer so the frames fit long_video_max_frames.")
    long_video_max_frames: int = Field(default=768, ge=4, description="Frames sampled across a whole long video "
                                       "(all windows together).")
    long_video_window_seconds: float = Field(default=300.0, gt=0, description="Longest stretch of a long video one "
                                             "model call (window) sees.")
    long_video_window_frames: int = Field(default=64, ge=4, description="Most frames one long-video window shows.")
    long_video_window_tokens: int = Field(default=4096, ge=64, description="Visual tokens one long-video window "
                                          "shows: its frames are resized to fit.")

    @model_validator(mode="after")
    def _check_relations(self) -> Limits:
        # Found here, when the config loads, rather than when the model loads or the first request comes.
        bad = [text for wrong, text in (
            (self.min_pixels < 1, "limits.min_pixels must be at least 1"),
            (self.max_pixels < self.min_pixels, f"limits.max_pixels ({self.max_pixels}) must not be below "
                                                f"limits.min_pixels ({self.min_pixels})"),
            (not 0 < self.video_fps < float("inf"), "limits.video_fps must be a positive number"),
            (self.video_max_frames < 4, "limits.video_max_frames must be at least 4 (Qwen3-VL's fewest frames)"),
            (self.long_video_max_frames < 4 * math.ceil(self.long_video_max_seconds / self.long_video_window_seconds),
             "limits.long_video_max_frames must allow 4 frames in each window: at least "
             f"{4 * math.ceil(self.long_video_max_seconds / self.long_video_window_seconds)} for "
             "long_video_max_seconds / long_video_window_seconds windows"),
            (self.default_max_tokens > self.max_tokens, f"limits.default_max_tokens ({self.default_max_tokens}) "
                                                        f"must not exceed limits.max_tokens ({self.max_tokens})"),
        ) if wrong]
        if bad:
            raise ValueError("\n".join(bad))
        return self


class Fetching(BaseModel):
    allow_hosts: list[str] = Field(default_factory=list, description="Hosts or CIDRs allowed though private.")
    deny_hosts: list[str] = Field(default_factory=list)
    connect_timeout: float = 5.0
    total_timeout: float = 20.0
    max_redirects: int = 3
    read_timeout: float = Field(default=10.0, gt=0, description="Seconds a fetch may wait for its next bytes (1007).")
    min_bytes_per_second: int = Field(default=16 * 1024, ge=0, description="A fetch slower than this on average after "
                                      "its first read_timeout seconds is cut off (1007); 0: no minimum.")
    max_per_host: int = Field(default=4, ge=1,
                              description="Fetches to one host at once, server-wide; more wait their turn.")
    max_fetches_per_request: int = Field(default=16, ge=1, description="URLs one request may fetch, redirects "
                                         "included (1006).")
    max_bytes_per_request: int = Field(default=64 * 1024 * 1024, ge=1, description="Bytes all fetches of one request "
                                       "may download together (1005).")
    local_root: Path | None = Field(None, description="Server-local files are readable only under this root.")


class ApiKey(BaseModel):
    id: str
    sha256: str = Field(description="hex SHA-256 of the key; the key itself is never stored")
    rate_per_minute: int | None = None


class Auth(BaseModel):
    keys: list[ApiKey] = Field(default_factory=list, description="Empty: no authentication.")
    default_rate_per_minute: int = 600
    max_failures_per_minute: int = Field(
        10, ge=1, description="Wrong API keys one client address may send per minute; beyond them every request "
        "from that address is refused with 4029 and Retry-After until the budget refills.")
    protect_docs: bool = Field(False, description="/docs and /openapi.json need a valid key (when keys are set).")
    protect_metrics: bool = Field(False, description="/metrics needs a valid key (when keys are set).")
    rate_limit_backend: Literal["auto", "memory", "redis"] = Field(
        "auto", description="Where the per-key and wrong-key token buckets live: `memory` (this replica's own), "
        "`redis` (shared by every gateway replica, so a key's rate holds across them); `auto`: `redis` when "
        "`jobs.backend` is `redis`, else `memory`.")
    redis_url: str | None = Field(None, description="Redis of the shared rate limits (None: `jobs.redis_url`).")
    redis_prefix: str = Field("vlserve:rate:", description="Prefix of the rate-limit keys in Redis.")
    redis_timeout: float = Field(0.5, gt=0, description="Seconds a rate-limit decision waits for Redis at most.")
    redis_unavailable: Literal["local", "refuse"] = Field(
        "local", description="Redis unreachable: `local` meters with this replica's own buckets until it is "
        "back (each replica then allows a key its whole rate), `refuse` answers 2001 with Retry-After.")

    def rate_limit_backend_for(self, jobs: Jobs) -> Literal["memory", "redis"]:
        if self.rate_limit_backend == "auto":
            return "redis" if jobs.backend == "redis" else "memory"
        return self.rate_limit_backend


class Moderation(BaseModel):
    enabled: bool = True
    blocked_terms: list[str] = Field(default_factory=list, description="Case-insensitive terms refused with 3001.")
    check_output: bool = True
    audit_log: Path = Field(Path("audit.jsonl"), description="Relative paths are under `data_dir`.")
    audit_max_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="The audit log is rotated past this size.")
    audit_keep: int = Field(5, ge=0, description="Rotated audit logs kept (audit.jsonl.1 ... .N); older ones go.")


class LaneSettings(BaseModel):
    """One isolated lane: its own queue, concurrency and model assignment."""

    queue_size: int = Field(32, ge=0, description="Requests that may wait beyond those running.")
    concurrency: int = Field(4, ge=1, description="Requests running at once (also the batch size).")
    max_client_share: float = Field(
        0.5, gt=0, le=1, description="Share of the lane's places (concurrency + queue_size) one client (API key, "
        "else client address) may hold; its further requests are refused with 2001 while others still get in. "
        "At least one place.")
    queue_timeout: float = Field(30.0, gt=0, description="Seconds a request may wait for a slot (then 2001).")
    model: str = Field("main", description="Name of the engine serving this lane (see `models`).")
    fallback: str | None = Field(None, description="Engine answering with code 2001 when the lane is full.")
    fallback_capacity: int = Field(16, ge=0, description="Degraded requests in flight at once on the fallback; "
                                   "beyond them a full lane refuses with 2001 and Retry-After.")
    media_memory_bytes: int | None = Field(
        None, ge=1, description="Bytes this lane's requests may hold at once preparing media (estimated from "
        "headers before decoding); None: only the global scheduling.media_memory_bytes. One request above it: "
        "1005; room taken by others: wait up to queue_timeout, then 2001.")
    visual_tokens: int | None = Field(
        None, ge=1, description="Visual tokens (images, pages, video frames) of this lane's requests in flight; "
        "None: only the global scheduling.visual_tokens.")


class Upstream(BaseModel):
    """Remote engines: OpenAI-compatible servers (vLLM, SGLang, another vlserve) serving one model,
    used as a pool of replicas (docs/remote.md). Empty ``upstreams``: the embedded engine."""

    upstreams: list[str] = Field(default_factory=list, description="Base URLs of the replicas "
                                 "(http://host:port, with or without /v1).")
    upstream_model: str | None = Field(None, description="The model name the upstreams serve; None: the first "
                                       "one their GET /v1/models lists.")
    dialect: Literal["vllm", "sglang", "vlserve", "openai"] = Field(
        "vllm", description="Which request extensions the upstreams understand (continue_final_message, "
        "mm_processor_kwargs, top_k, repetition_penalty); 'openai' sends only the standard fields.")
    api_key: SecretStr | None = Field(None, description="Bearer token sent to the upstreams.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect to an upstream (then 5007).")
    read_timeout: float = Field(120.0, gt=0, description="Seconds an upstream may stay silent, first token "
                                "included (then 5006).")
    max_concurrency: int = Field(64, ge=1, description="Requests in flight to one upstream at once; when every "
                                 "replica is at it, requests are refused with 2001.")
    max_queue: int = Field(16, ge=0, description="Requests waiting in an upstream's own queue (its Prometheus "
                           "vllm:num_requests_waiting, sglang:num_queue_reqs or vlserve_queue_depth) at which "
                           "that replica takes no more (2001 when all are so); 0: not watched.")
    eject_after: int = Field(3, ge=1, description="Consecutive failures after which a replica is taken out "
                             "until a health probe succeeds.")
    probe_interval: float = Field(5.0, gt=0, description="Seconds between health and queue-depth probes.")
    image_format: Literal["png", "jpeg"] = Field("png", description="How images are re-encoded for upstreams.")
    max_images: int = Field(16, ge=1, description="Images the upstreams take in one request (vLLM's "
                            "--limit-mm-per-prompt, a vlserve upstream's limits.max_images): a long-video window "
                            "sent as images is thinned to this many.")
    image_passthrough: bool = Field(True, description="Send a PNG or JPEG image that needs no resizing and "
                                    "decoded as stored (opaque RGB, no EXIF rotation) as the caller's own bytes, "
                                    "after the same checks, instead of re-encoding it; False: always re-encode "
                                    "(which also drops the file's metadata).")
    confidence: bool = Field(True, description="Ask upstreams for token log-probabilities on every request, so "
                             "that answers carry `confidence`; False: only when the caller asks for logprobs "
                             "(confidence is null otherwise), which spares the upstream that work.")
    whole_answer_max_tokens: int = Field(
        512, ge=0, le=1_000_000, description="Requests whose caller reads only the finished answer (/infer, jobs) "
        "and that may generate at most this many tokens go upstream with stream: false (one JSON answer: no "
        "per-token events to write and parse on either side). Longer ones stream, so that read_timeout bounds "
        "the silence between tokens rather than the whole answer. 0: always stream.")

    @field_validator("upstreams")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        out = []
        for url in value:
            base = url.strip().rstrip("/").removesuffix("/v1")
            scheme, _, rest = base.partition("://")
            if scheme not in ("http", "https") or not rest or any(c in rest for c in "?#"):
                raise ValueError(f"upstream {url!r} must be an http(s) base URL such as http://10.0.0.5:8000")
            out.append(base)
        return out


class ModelSettings(Upstream):
    """An extra engine: another checkpoint, another instance of the same one, or upstream servers."""

    model: str | None = Field(None, description="The checkpoint of an embedded engine (or set `upstreams`).")
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    adapter: Path | None = Field(None, description="LoRA adapter folder from `vlserve finetune`, merged at load.")

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSettings:
        if (self.model is None) == (not self.upstreams):
            raise ValueError("a model entry needs either `model` (an embedded checkpoint) or `upstreams` "
                             "(URLs of OpenAI-compatible servers), not both")
        return self


def _default_lanes() -> dict[str, LaneSettings]:
    return {
        "interactive": LaneSettings(queue_size=32, concurrency=8, queue_timeout=30.0),
        "batch": LaneSettings(queue_size=256, concurrency=4, queue_timeout=600.0),
        "video": LaneSettings(queue_size=8, concurrency=2, queue_timeout=120.0),
    }


class Scheduling(BaseModel):
    lanes: dict[str, LaneSettings] = Field(
        default_factory=_default_lanes,
        description="Configured lanes merge with the defaults: a lane left out keeps its default, a lane "
        "given in part keeps its default values for the fields not given.")
    models: dict[str, ModelSettings] = Field(default_factory=dict, description="Engines besides 'main'.")
    batch_window_ms: float = Field(
        5.0, ge=0, description="How long an idle engine waits for more requests to share its first prefill.")
    batch_max_tokens: int = Field(
        131072, ge=1, description="KV-cache budget of a running batch in token slots: rows x (longest prompt + "
        "most tokens a row may still generate). A request that would exceed it waits for rows to finish.")
    prepare_workers: int = Field(4, ge=1, description="Threads decoding media off the event loop.")
    min_step_ms: float = Field(
        0.0, ge=0, le=10_000, description="Benchmarks only: every forward pass of the embedded engine (a prefill "
        "or a decode step) lasts at least this long, the engine thread sleeping out the rest, so that the tiny "
        "model answers at a GPU deployment's pace (bench/remote.py). 0: off; never set it in production.")
    media_memory_bytes: int = Field(
        1 << 30, ge=1 << 20, description="Bytes all requests together may hold preparing media (fetched bytes, "
        "decoded and resized images, rendered pages, decoded video frames, vision tensors), estimated from headers "
        "before anything is decoded and reserved until the request ends.")
    visual_tokens: int = Field(
        262_144, ge=1, description="Visual tokens of all requests in flight together (their prefill cost).")
    client_budget_share: float = Field(
        0.5, gt=0, le=1, description="Share of each cost budget (media memory, visual tokens; server and lane) one "
        "client may hold while it has a request reserved: its next request waits behind its own (2001 after "
        "queue_timeout) while other clients' go past. A client with nothing reserved may take any request that fits.")

    @field_validator("lanes", mode="before")
    @classmethod
    def _merge_default_lanes(cls, value: Any) -> Any:
        # The tasks route to interactive/batch/video by name: configuring one lane must never drop
        # another (a job on a missing lane would wait forever), nor reset its other fields.
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {}
        for name, default in _default_lanes().items():
            given = value.get(name, {})
            if isinstance(given, LaneSettings):
                given = given.model_dump(exclude_unset=True)
            merged[name] = {**default.model_dump(), **given} if isinstance(given, dict) else given
        return {**value, **merged}

    @model_validator(mode="after")
    def _check_references(self) -> Scheduling:
        # Every engine name a lane mentions must exist before any model is loaded.
        if "main" in self.models:
            raise ValueError("scheduling.models.main: 'main' is the engine of the top-level `model` setting; "
                             "give this engine another name")
        known = ["main", *self.models]
        bad = [f"scheduling.lanes.{name}.{key} names the engine {ref!r}, which is not configured "
               f"(configured: {', '.join(map(repr, known))}; add it under [scheduling.models.{ref}])"
               for name, lane in self.lanes.items() for key, ref in (("model", lane.model), ("fallback", lane.fallback))
               if ref is not None and ref not in known]
        if bad:
            raise ValueError("\n".join(bad))
        return self


class Jobs(BaseModel):
    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: Path = Field(Path("jobs.sqlite3"), description="Relative paths are under `data_dir`.")
    redis_url: str = "redis://127.0.0.1:6379/0"
    workers: int = Field(2, ge=0, description="Jobs run at once by this replica (0: accept, run elsewhere).")
    lease_seconds: float = 30.0
    max_batch: int = Field(100, ge=1, description="Requests in one POST /jobs.")
    max_stored_bytes_per_key: int = Field(
        256 * 1024 * 1024, ge=0, description="Bytes of stored job requests and results one key may hold "
        "(finished jobs count until purged); a submission beyond it is refused with 4029. 0: no quota.")
    retention_seconds: float = Field(7 * 86400.0, ge=0, description="Finished jobs are deleted this long after "
                                     "they finished (0: kept until max_finished).")
    max_finished: int = Field(100_000, ge=0, description="Finished jobs kept at most; the oldest go first "
                              "(0: no count limit).")
    # GET /jobs/{id}/events (docs/jobs.md#following-a-job): Server-Sent Events while a job runs.
    events_max_streams_per_key: int = Field(4, ge=0, description="Event streams one key may hold open on this "
                                            "replica; one more is refused with 4029 (0: no event streams).")
    events_max_streams: int = Field(256, ge=0, description="Event streams open on this replica at once; one more "
                                    "is refused with 2001 (0: no event streams).")
    events_poll_interval: float = Field(0.5, gt=0, le=60, description="Seconds between reads of the job's state "
                                        "(a summary without bodies) while a stream is open.")
    events_keepalive_seconds: float = Field(15.0, gt=0, le=300, description="A comment line is sent after this "
                                            "long without an event, so proxies keep the stream open.")
    events_max_seconds: float = Field(3600.0, gt=0, description="A stream open this long ends with an error "
                                      "event (4008); reconnect to follow the job further.")


class Rendering(BaseModel):
    """visual_coding's render-back of the model's HTML to a PNG (`options.render`; docs/api.md#visual_coding).
    The page is untrusted: scripts off, every request but data: refused, no network at all."""

    enabled: bool = Field(True, description="Off: `options.render` answers without a picture, with a warning.")
    chromium: Path | None = Field(None, description="The chromium binary (None: /usr/bin/chromium, else "
                                  "`chromium` or `chromium-browser` on PATH).")
    width: int = Field(1280, ge=64, le=4096, description="Viewport width in CSS pixels (the PNG's width).")
    height: int = Field(800, ge=64, le=4096, description="Viewport height; only the viewport is captured.")
    timeout_seconds: float = Field(15.0, gt=0, le=300, description="Browser start, layout and screenshot together; "
                                   "beyond: no picture, a warning.")
    max_concurrent: int = Field(1, ge=1, description="Browsers rendering at once; a render waiting longer than "
                                "timeout_seconds for its turn is skipped with a warning.")


class Recon3DRefine(BaseModel):
    """Bounds of one photo refinement (`vlserve recon3d refine`; docs/recon3d.md#refinement)."""

    max_photos: int = Field(64, ge=3, le=500, description="Photos one refinement may use; more: refused (4000).")
    max_image_size: int = Field(1600, ge=320, description="Long side (px) photos are scaled to for SfM features.")
    max_features: int = Field(4096, ge=256, description="SIFT features per photo.")
    min_registered: int = Field(3, ge=2, description="Photos that must register in SfM; fewer: refused (4000).")
    mapping_seconds: float = Field(120.0, gt=0, description="Time limit of SfM's incremental mapping.")
    fit_seconds: float = Field(90.0, gt=0, description="Time limit of the parameter fit (best result so far kept).")
    fit_evaluations: int = Field(600, ge=10, description="Mesh rebuilds/evaluations the fit may spend.")
    fit_points: int = Field(1000, ge=50, description="Object points the fit uses (a random subset beyond).")
    min_object_points: int = Field(200, ge=30, description="Points SfM must reconstruct on the object before its "
                                   "dimensions are fitted; fewer: the spec is returned unrefined, with the reason.")
    max_change: float = Field(0.6, gt=0, le=4, description="A length may change by at most this factor "
                              "(1 + max_change larger or smaller).")
    # The multiview_3d job option `refine` runs all of it in a worker process under these hard limits.
    wall_seconds: float = Field(300.0, gt=0, description="Hard wall-clock limit of one refinement in a job or "
                                "from-images (its worker process is killed); beyond: the unrefined model is "
                                "delivered with a warning (refine_report.code 4013).")
    memory_bytes: int = Field(4 * 1024**3, ge=0, description="Memory one refinement may add to its worker "
                              "process (RLIMIT_AS); beyond: as for wall_seconds.")
    workers: int = Field(1, ge=1, description="Refinements running at once (worker processes); more wait.")


class Recon3D(BaseModel):
    artifacts_dir: Path = Field(Path("artifacts"), description="Files made by multiview_3d, per request "
                                "(relative paths are under `data_dir`).")
    retention_seconds: float = Field(7 * 86400.0, ge=0, description="Artifacts are deleted this long after they "
                                     "were made (0: kept until max_bytes).")
    max_bytes: int = Field(4 * 1024**3, ge=0, description="Bytes of artifacts kept at most; the oldest requests' "
                           "files go first (0: no size limit).")
    # Limits of one 3D build (docs/recon3d.md#limits): refused up front with 4000, or stopped with 4013.
    max_primitives: int = Field(2000, ge=1, description="Placed primitives after templates, patterns and "
                                "mirrors are expanded; more: refused up front (4000).")
    max_triangles: int = Field(1_000_000, ge=1000, description="Triangles of the solid, estimated before the "
                               "compile and counted after it; more: refused (4000).")
    compile_seconds: float = Field(60.0, gt=0, description="Hard time limit of the compile (a killed worker "
                                   "process); beyond: 4013.")
    export_seconds: float = Field(60.0, gt=0, description="Hard time limit of each exporter; a STEP export past it "
                                  "is dropped with a warning (mesh-only), any other ends the build with 4013.")
    segments: int = Field(96, ge=8, le=1024, description="Vertices per full circle of the compiled meshes.")
    memory_bytes: int = Field(4 * 1024**3, ge=0, description="Memory one build may add to its worker process "
                              "(RLIMIT_AS); beyond: 4013.")
    workers: int = Field(1, ge=1, description="Worker processes compiling 3D builds at once (and as many for STEP).")
    default_formats: list[str] = Field(["glb", "stl", "obj", "ply", "scad", "py", "png"], description="Files "
                                       "multiview_3d writes unless a request's options.formats says otherwise "
                                       "(add \"step\" for exact CAD).")
    refine: Recon3DRefine = Field(default_factory=Recon3DRefine)


class Http(BaseModel):
    """Connection hygiene: how long and how much a client may hold a connection (docs/api.md)."""

    header_timeout: float = Field(10.0, gt=0, description="Seconds from a connection's opening (or a request's "
                                  "first byte) to its complete request head; then 408 (4008) and closed.")
    max_header_bytes: int = Field(16 * 1024, ge=1024, description="Request line and headers together; beyond: "
                                  "431 (4031) and closed.")
    body_timeout: float = Field(10.0, gt=0, description="Seconds to receive a request body, plus one second per "
                                "body_min_rate bytes received; then 408 (4008) and closed.")
    body_min_rate: int = Field(16 * 1024, ge=1, description="Bytes per second a body upload must average.")
    max_inflight_body_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="Bytes of request bodies all requests in flight may hold together "
        "(bodies stay in memory until their request ends); a body that would exceed it gets 503 (2001) and "
        "Retry-After before it is read.")
    keepalive_timeout: float = Field(5.0, gt=0, description="Idle seconds before a keep-alive connection closes.")


class ResponseCache(BaseModel):
    """Answers of deterministic requests (greedy, or a fixed seed), served again (docs/cache.md)."""

    enabled: bool = Field(False, description="Serve repeated deterministic requests from the cache (answers say "
                          "`cached: true`). Off by default: a stored answer is served again as it was.")
    backend: Literal["memory", "redis"] = Field("memory", description="`memory`: this replica's own; `redis`: "
                                                "shared by every gateway replica.")
    ttl_seconds: float = Field(3600.0, gt=0, description="How long a stored answer is served.")
    task_ttl_seconds: dict[str, float] = Field(default_factory=dict, description="Per-task TTL overriding "
                                               "ttl_seconds; 0 turns the cache off for that task.")
    disabled_tasks: list[str] = Field(default_factory=list, description="Tasks never served from the cache.")
    max_bytes: int = Field(64 * 1024 * 1024, ge=0, description="memory backend: bytes of stored answers; the least "
                           "recently used go first.")
    max_entry_bytes: int = Field(1024 * 1024, ge=1024, description="A larger answer is not stored (both backends).")
    redis_url: str | None = Field(None, description="Redis of the shared cache (None: `jobs.redis_url`).")
    redis_prefix: str = Field("vlserve:response:", description="Prefix of the cache's keys in Redis.")
    redis_timeout: float = Field(0.5, gt=0, description="Seconds a lookup or store waits for Redis; then a miss.")


class MediaCache(BaseModel):
    """Decoded images (gateway) and preprocessed image/video tensors (embedded engine) by content hash."""

    max_bytes: int = Field(128 * 1024 * 1024, ge=0, description="Decoded images kept by content hash (0: off).")
    features_max_bytes: int = Field(128 * 1024 * 1024, ge=0, description="Resized, normalised image and video "
                                    "tensors kept by the embedded engine (0: off).")


class EncoderCache(BaseModel):
    """Vision-tower outputs kept by the embedded engine (docs/cache.md#vision-encoder-cache)."""

    max_bytes: int = Field(128 * 1024 * 1024, ge=0, description="Bytes of vision-tower outputs (embeddings and "
                           "deepstack features) on the model's device (0: off).")


class Cache(BaseModel):
    """Response, media and vision-encoder caches (docs/cache.md). All off in privacy mode."""

    scope: Literal["key", "shared"] = Field("key", description="`key`: each API key has its own entries, so "
                                            "timing never tells one key what another asked; `shared`: keys share "
                                            "entries (more hits; a fast answer reveals that someone sent the "
                                            "same input before).")
    response: ResponseCache = Field(default_factory=ResponseCache)
    media: MediaCache = Field(default_factory=MediaCache)
    encoder: EncoderCache = Field(default_factory=EncoderCache)

    def in_effect(self, privacy: bool) -> Cache:
        """These settings, or every cache off (privacy mode keeps no content beyond its request)."""
        if not privacy:
            return self
        return Cache(scope=self.scope, response=self.response.model_copy(update={"enabled": False}),
                     media=MediaCache(max_bytes=0, features_max_bytes=0), encoder=EncoderCache(max_bytes=0))


class Retention(BaseModel):
    """How often stored state is purged (its limits live in `jobs`, `recon3d` and `moderation`)."""

    purge_interval: float = Field(600.0, ge=0, description="Seconds between background purges in the server "
                                  "(0: only `vlserve purge`).")


class Privacy(BaseModel):
    """Privacy mode (docs/api.md#privacy-mode): one switch for deployments handling sensitive inputs."""

    enabled: bool = Field(False, description="No input URLs are fetched (1008); image metadata (EXIF, GPS, XMP, "
                          "comments) is stripped before anything else sees the bytes; async jobs are refused "
                          "(4030); 3D artifacts are served once, then deleted; the audit log holds no hashes "
                          "of content; /readyz reports `privacy: true`.")
    artifact_seconds: float = Field(300.0, gt=0, description="In privacy mode, files a request made (3D models) "
                                    "are deleted this long after the request ended, or when first downloaded.")


class Artifacts(BaseModel):
    """Where the files a request made are kept for download (docs/deploy.md#artifacts-in-an-s3-compatible-store).

    ``local`` (default): in ``recon3d.artifacts_dir``, which several gateways may share as a volume.
    ``s3``: each request's files are uploaded to ``s3_bucket`` under ``s3_prefix/<request_id>/`` once
    made, and every gateway serves them from there; ``recon3d.artifacts_dir`` only stages them (and
    keeps a request's files when its upload failed). Needs ``pip install "vlserve[s3]"``.
    """

    store: Literal["local", "s3"] = Field("local", description="`local`: files in `recon3d.artifacts_dir`; "
                                         "`s3`: in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2...).")
    s3_bucket: str = Field("", description="The bucket (must exist; required with store = \"s3\").")
    s3_prefix: str = Field("vlserve-artifacts", description="Key prefix of every object: "
                           "`<prefix>/<request_id>/<name>`; gateways sharing a bucket share a prefix.")
    s3_endpoint_url: str | None = Field(None, description="Endpoint of a non-AWS store, e.g. "
                                        "`http://minio:9000` (None: AWS S3 for `s3_region`).")
    s3_region: str | None = Field(None, description="Region (None: boto3's default chain, AWS_REGION...).")
    s3_access_key_id: SecretStr | None = Field(None, description="Access key; None: boto3's default chain "
                                               "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, instance "
                                               "or pod role).")
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret key; set with s3_access_key_id.")
    s3_timeout: float = Field(10.0, gt=0, le=300, description="Seconds to connect to the store and between "
                              "the bytes of one answer; beyond: an upload fails (files stay local), a "
                              "download is a 404.")

    @model_validator(mode="after")
    def _s3_complete(self) -> Artifacts:
        if self.store != "s3":
            return self
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.s3_bucket):
            raise ValueError("artifacts.s3_bucket must name a bucket (3-63 characters: a-z, 0-9, '.', '-') "
                             "when artifacts.store is \"s3\"")
        self.s3_prefix = self.s3_prefix.strip("/")
        if not re.fullmatch(r"[A-Za-z0-9_.\-/]{0,512}", self.s3_prefix) or "//" in self.s3_prefix:
            raise ValueError("artifacts.s3_prefix may hold only A-Z, a-z, 0-9, '_', '.', '-' and single '/'")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both artifacts.s3_access_key_id and artifacts.s3_secret_access_key, or neither "
                             "(boto3's default chain then finds the credentials)")
        if self.s3_endpoint_url is not None and not self.s3_endpoint_url.startswith(("http://", "https://")):
            raise ValueError("artifacts.s3_endpoint_url must be an http:// or https:// URL")
        if importlib.util.find_spec("boto3") is None:  # found, not imported: a local gateway never loads it
            raise ValueError('artifacts.store = "s3" needs boto3: pip install "vlserve[s3]"')
        return self


def default_data_dir() -> Path:
    """``$VLSERVE_DATA_DIR``, else the per-user data directory (``~/.local/share/vlserve`` on Linux)."""
    explicit = os.environ.get("VLSERVE_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("vlserve", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VLSERVE_", env_nested_delimiter="__", extra="ignore")

    model: str = "tiny"
    model_name: str | None = None
    adapter: Path | None = Field(None, description="LoRA adapter folder from `vlserve finetune` for `model`.")
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    host: str = "127.0.0.1"
    port: int = 8000
    limits: Limits = Field(default_factory=Limits)
    fetching: Fetching = Field(default_factory=Fetching)
    auth: Auth = Field(default_factory=Auth)
    moderation: Moderation = Field(default_factory=Moderation)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    jobs: Jobs = Field(default_factory=Jobs)
    recon3d: Recon3D = Field(default_factory=Recon3D)
    rendering: Rendering = Field(default_factory=Rendering)
    http: Http = Field(default_factory=Http)
    retention: Retention = Field(default_factory=Retention)
    privacy: Privacy = Field(default_factory=Privacy)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    cache: Cache = Field(default_factory=Cache)
    remote: Upstream = Field(default_factory=Upstream, description="With `remote.upstreams` set, `main` is a pool "
                             "of those servers and `model` is not loaded (docs/remote.md).")
    data_dir: Path = Field(default_factory=default_data_dir, description="All state (jobs database, artifacts, "
                           "audit log) lives here; relative paths in the settings resolve under it. Never the "
                           "current directory by default.")
    expose_docs: bool = True
    expose_ui: bool = Field(True, description="Serve the web demo page at /ui/ (it calls this server's API).")

    @model_validator(mode="after")
    def _under_data_dir(self) -> Settings:
        # Relative state paths name places inside the data directory, wherever the server starts.
        self.data_dir = self.data_dir.expanduser().absolute()
        self.jobs.sqlite_path = self.state_path(self.jobs.sqlite_path)
        self.recon3d.artifacts_dir = self.state_path(self.recon3d.artifacts_dir)
        self.moderation.audit_log = self.state_path(self.moderation.audit_log)
        return self

    def state_path(self, path: Path) -> Path:
        """``path`` if absolute (``~`` expanded), else under ``data_dir``."""
        path = path.expanduser()
        return path if path.is_absolute() else self.data_dir / path

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``path``, then environment variables, then explicit ``overrides``."""
        data: dict[str, Any] = read_file(path) if path else {}
        # The environment's values, unvalidated: a lane in VLSERVE_... may name an engine the file adds.
        merged = _deep_merge(data, EnvSettingsSource(cls)())
        return cls.model_validate(_deep_merge(merged, {k: v for k, v in overrides.items() if v is not None}))


def read_file(path: Path) -> dict[str, Any]:
    """A settings file's contents (TOML by ``.toml``, YAML by ``.yaml``/``.yml``, else JSON)."""
    text = path.read_text()
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return dict(yaml.safe_load(text) or {})
    return dict(json.loads(text))


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
