"""Servers with caches configured, on loopback with the session's tiny engines, and sample inputs."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from vlserve.api.app import create_app
from vlserve.config import Settings
from vlserve.testing.server import serving


def image_uri(seed: int, size: int = 48, *, flip: tuple[int, int] | None = None) -> str:
    """A random PNG; ``flip`` changes one pixel (so one byte of the content at least)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    if flip is not None:
        pixels[flip] ^= 1
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def settings(tmp: Path, **cache: Any) -> Settings:
    extra = cache.pop("extra", {})
    return Settings.model_validate({
        "jobs": {"sqlite_path": str(tmp / "jobs.sqlite3")},
        "recon3d": {"artifacts_dir": str(tmp / "artifacts")},
        "moderation": {"audit_log": str(tmp / "audit.jsonl")},
        "cache": cache,
        **extra,
    })


@contextmanager
def server(engine: Any, settings: Settings) -> Iterator[str]:
    with serving(create_app(settings, engine=engine)) as url:
        yield url


def vqa(image: str, text: str = "What is shown?", **options: Any) -> dict[str, Any]:
    return {"task": "vqa", "images": [image], "text": text, "options": {"max_tokens": 6, **options}}


def infer(url: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = httpx.post(url + "/infer", json=body, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return dict(response.json())


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of ``/metrics`` (0 when absent)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}{re.escape('{' + inner + '}')} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
