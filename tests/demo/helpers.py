"""Servers on loopback for the demo tests, and the files the browser uploads."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vlserve.testing.server import iter_server

CHROMIUM = Path("/usr/bin/chromium")
KEY = "vls-demo-test-key"  # the one key of the `keyed_server` fixture


run_server = iter_server  # a real uvicorn on loopback, in a thread

def server_settings(tmp: Path, **overrides: Any) -> Any:
    from vlserve.config import Settings

    data: dict[str, Any] = {
        "limits": {"max_body_bytes": 8 * 1024 * 1024, "max_tokens": 2048},
        "moderation": {"audit_log": str(tmp / "audit.jsonl")},
        "jobs": {"sqlite_path": str(tmp / "jobs.sqlite3")},
        "recon3d": {"artifacts_dir": str(tmp / "artifacts")},
    }
    data.update(overrides)
    return Settings.model_validate(data)


def scene_png(path: Path, width: int = 320, height: int = 240) -> Path:
    """A picture with shapes on a light background (no magenta anywhere, so drawn boxes stand out)."""
    image = Image.new("RGB", (width, height), (235, 240, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((30, 40, 130, 160), fill=(40, 120, 200))
    draw.ellipse((170, 60, 290, 180), fill=(230, 160, 30))
    image.save(path, "PNG")
    return path


def photo(path: Path, seed: int, width: int = 320, height: int = 240) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path, "PNG")
    return path


def broken_png(path: Path) -> Path:
    """Named and typed like a PNG, but not one: the server answers 1001."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not an image" * 20)
    return path


def magenta_pixels(png: bytes) -> int:
    """How many pixels of a screenshot are the page's box colour (#ff00ff, allowing for blending)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > 220) & (g < 60) & (b > 220)).sum())


def non_background_pixels(png: bytes) -> int:
    """Pixels of a screenshot that differ clearly from their image's most common colour."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    flat = pixels.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    background = values[counts.argmax()]
    return int((np.abs(flat - background).sum(axis=1) > 60).sum())


def long_video(path: Path, seconds: int = 31) -> Path:
    """A tiny H.264 MP4 one frame a second, longer than the server's 30 s: the server answers 1002."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(seconds):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 8 % 256, dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
