"""One typed settings object: every limit of the service is named here.

Values come from (later wins) the defaults below, a config file (``--config FILE``, TOML, JSON or
YAML) and environment variables prefixed ``VLSERVE_`` with ``__`` between nested names, e.g.
``VLSERVE_LIMITS__MAX_IMAGES=4`` or ``VLSERVE_MODEL=/models/Qwen3-VL-8B-Instruct``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Limits(BaseModel):
    max_body_bytes: int = 64 * 1024 * 1024
    max_images: int = 16
    max_videos: int = 2
    max_documents: int = 2
    max_text_chars: int = 32_000
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


class Fetching(BaseModel):
    allow_hosts: list[str] = Field(default_factory=list, description="Hosts or CIDRs allowed though private.")
    deny_hosts: list[str] = Field(default_factory=list)
    connect_timeout: float = 5.0
    total_timeout: float = 20.0
    max_redirects: int = 3
    local_root: Path | None = Field(None, description="Server-local files are readable only under this root.")


class ApiKey(BaseModel):
    id: str
    sha256: str = Field(description="hex SHA-256 of the key; the key itself is never stored")
    rate_per_minute: int | None = None


class Auth(BaseModel):
    keys: list[ApiKey] = Field(default_factory=list, description="Empty: no authentication.")
    default_rate_per_minute: int = 600


class Moderation(BaseModel):
    enabled: bool = True
    blocked_terms: list[str] = Field(default_factory=list, description="Case-insensitive terms refused with 3001.")
    check_output: bool = True
    audit_log: Path = Path("vlserve-audit.jsonl")


class LaneSettings(BaseModel):
    """One isolated lane: its own queue, concurrency and model assignment."""

    queue_size: int = Field(32, ge=0, description="Requests that may wait beyond those running.")
    concurrency: int = Field(4, ge=1, description="Requests running at once (also the batch size).")
    queue_timeout: float = Field(30.0, gt=0, description="Seconds a request may wait for a slot (then 2001).")
    model: str = Field("main", description="Name of the engine serving this lane (see `models`).")
    fallback: str | None = Field(None, description="Engine answering with code 2001 when the lane is full.")
    fallback_capacity: int = Field(16, ge=0, description="Degraded requests in flight at once on the fallback; "
                                   "beyond them a full lane refuses with 2001 and Retry-After.")


class ModelSettings(BaseModel):
    """An extra engine: another checkpoint, or another instance of the same one."""

    model: str
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


def _default_lanes() -> dict[str, LaneSettings]:
    return {
        "interactive": LaneSettings(queue_size=32, concurrency=8, queue_timeout=30.0),
        "batch": LaneSettings(queue_size=256, concurrency=4, queue_timeout=600.0),
        "video": LaneSettings(queue_size=8, concurrency=2, queue_timeout=120.0),
    }


class Scheduling(BaseModel):
    lanes: dict[str, LaneSettings] = Field(default_factory=_default_lanes)
    models: dict[str, ModelSettings] = Field(default_factory=dict, description="Engines besides 'main'.")
    batch_window_ms: float = Field(
        5.0, ge=0, description="How long an idle engine waits for more requests to share its first prefill.")
    batch_max_tokens: int = Field(
        131072, ge=1, description="KV-cache budget of a running batch in token slots: rows x (longest prompt + "
        "most tokens a row may still generate). A request that would exceed it waits for rows to finish.")
    prepare_workers: int = Field(4, ge=1, description="Threads decoding media off the event loop.")


class Jobs(BaseModel):
    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: Path = Path("vlserve-jobs.sqlite3")
    redis_url: str = "redis://127.0.0.1:6379/0"
    workers: int = Field(2, ge=0, description="Jobs run at once by this replica (0: accept, run elsewhere).")
    lease_seconds: float = 30.0
    max_batch: int = Field(100, ge=1, description="Requests in one POST /jobs.")


class Recon3D(BaseModel):
    artifacts_dir: Path = Field(Path("vlserve-artifacts"), description="Files made by multiview_3d, per request.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VLSERVE_", env_nested_delimiter="__", extra="ignore")

    model: str = "tiny"
    model_name: str | None = None
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
    expose_docs: bool = True

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``path``, then environment variables, then explicit ``overrides``."""
        data: dict[str, Any] = _read_file(path) if path else {}
        env = cls()  # environment only
        merged = _deep_merge(data, env.model_dump(exclude_unset=True))
        return cls.model_validate(_deep_merge(merged, {k: v for k, v in overrides.items() if v is not None}))


def _read_file(path: Path) -> dict[str, Any]:
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
