"""Caches: time to first token for the same image asked twice (cold, then warm), and hit rates.

    python bench/cache.py [--pairs 3] [--side 4000] [--max-pixels 1310720] [--mix 30] [--repeat 0.3]

One ``vlserve serve --model tiny`` process with every cache on (``cache.response.enabled``,
``cache.scope = "shared"``). Images are photo-like JPEGs (gradients, shapes, mild noise) of
``--side`` x ``3/4 --side`` pixels sent by path (``fetching.local_root``), as from shared storage:
the upload is the same cold or warm and not what is measured. ``--max-pixels`` is the model's
image budget (``limits.max_pixels``, default the server's 1.3 Mpx, 1280 image tokens; Qwen3-VL's
own processor allows up to 16 Mpx). A 12 Mpx photo is where decoding, resizing and the vision
tower (attention over all of the image's patches, 4 per token) dominate the time to first token,
even for the tiny model: its language model is as small as its tower.

1. **media + vision-encoder caches**: a *sampled* request (``temperature`` 0.8, no seed), which
   the response cache must not answer; cold = first time the image is seen, warm = the same
   request again (decoding, resizing and the vision tower skipped; the language model still
   prefills every image token);
2. **response cache**: a greedy request asked twice (the second answered from the cache);
3. **a realistic mix**: ``--mix`` requests of smaller images (``--mix-side``), ``--repeat`` of
   them repeating an image already sent, half greedy and half sampled; hit rates of every cache
   from ``/metrics``.

TTFT is measured by the client: request sent → first ``token`` event of ``/infer_stream``.
Printed side by side with warm/cold ratios; goal: warm TTFT ≤ 1/5 of cold.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from common import served  # noqa: E402

from vlserve.config import Limits, Settings  # noqa: E402

CACHES = ("response", "media_decoded", "media_features", "vision_encoder")


def photo(seed: int, side: int, folder: Path) -> str:
    """A photo-like JPEG (smooth gradients, shapes, sensor-like noise) saved in ``folder``."""
    rng = np.random.default_rng(seed)
    h, w = side * 3 // 4, side
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, (x + y) / (w + h)], -1) * rng.uniform(120, 255, 3)
    image = Image.fromarray(np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, w - 10)), int(rng.integers(0, h - 10))
        draw.ellipse((x0, y0, x0 + int(rng.integers(10, w // 4)), y0 + int(rng.integers(10, h // 4))),
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    path = folder / f"photo-{seed}-{side}.jpg"
    image.save(path, "JPEG", quality=90)
    return str(path)


def ttft(client: httpx.Client, body: dict[str, Any]) -> tuple[float, bool]:
    """Seconds to the first token event, and whether the answer said ``cached: true``."""
    start = time.perf_counter()
    first = None
    final: dict[str, Any] = {}
    with client.stream("POST", "/infer_stream", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.read()[:300]!r}")
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "token" and first is None:
                    first = time.perf_counter() - start
            elif line.startswith("data: ") and event == "final":
                final = json.loads(line[6:])
            elif line.startswith("data: ") and event == "error":
                raise RuntimeError(line)
    return (first if first is not None else time.perf_counter() - start), bool(final["metadata"].get("cached"))


def request(path: str, *, sampled: bool, max_tokens: int = 4, text: str = "Describe this photo.") -> dict[str, Any]:
    return {"task": "vqa", "images": [path], "text": text,
            "options": {"max_tokens": max_tokens, "temperature": 0.8 if sampled else 0.0}}


def counters(client: httpx.Client) -> dict[tuple[str, str], float]:
    text = client.get("/metrics").text
    found: dict[tuple[str, str], float] = {}
    for kind in ("hits", "misses"):
        pattern = rf'^vlserve_cache_{kind}_total{{cache="(\w+)",engine="\w*"}} (\S+)$'
        for cache, value in re.findall(pattern, text, re.M):
            found[(cache, kind)] = found.get((cache, kind), 0.0) + float(value)
    return found


def pairs(client: httpx.Client, folder: Path, args: argparse.Namespace, *, sampled: bool) -> list[tuple[float, float]]:
    out = []
    for i in range(args.pairs):
        body = request(photo(1000 * (2 if sampled else 3) + i, args.side, folder), sampled=sampled)
        cold, cold_cached = ttft(client, body)
        warm, warm_cached = ttft(client, body)
        assert not cold_cached and warm_cached == (not sampled), "unexpected cache state"
        out.append((cold, warm))
        print(f"  image {i + 1}: cold {cold * 1000:8.1f} ms   warm {warm * 1000:8.1f} ms   "
              f"warm/cold {warm / cold:.3f}", flush=True)
    return out


def report(name: str, measured: list[tuple[float, float]]) -> str:
    cold = statistics.median(c for c, _ in measured)
    warm = statistics.median(w for _, w in measured)
    verdict = "met" if warm <= cold / 5 else "MISSED"
    return (f"{name:<34} {cold * 1000:10.1f} {warm * 1000:10.1f} {warm / cold:9.3f}  "
            f"{cold / warm:6.1f}x  goal <= 0.200: {verdict}")


def mix(client: httpx.Client, folder: Path, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    seen: list[str] = []
    before = counters(client)
    times: dict[str, list[float]] = {"new": [], "repeated": []}
    for i in range(args.mix):
        repeat = bool(seen) and rng.random() < args.repeat
        path = rng.choice(seen) if repeat else photo(5000 + i, args.mix_side, folder)
        if not repeat:
            seen.append(path)
        sampled = rng.random() < 0.5
        elapsed, _ = ttft(client, request(path, sampled=sampled))
        times["repeated" if repeat else "new"].append(elapsed)
    after = counters(client)
    print(f"\nrealistic mix: {args.mix} requests of {args.mix_side}x{args.mix_side * 3 // 4} photos, "
          f"{len(times['repeated'])} repeating an earlier image, half greedy / half sampled")
    for cache in CACHES:
        hits = after.get((cache, "hits"), 0) - before.get((cache, "hits"), 0)
        misses = after.get((cache, "misses"), 0) - before.get((cache, "misses"), 0)
        rate = hits / (hits + misses) if hits + misses else 0.0
        print(f"  {cache:<16} hits {hits:4.0f}  misses {misses:4.0f}  hit rate {rate:6.1%}")
    for kind, values in times.items():
        if values:
            print(f"  TTFT {kind:<9} median {statistics.median(values) * 1000:8.1f} ms over {len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="images asked twice, per cache")
    parser.add_argument("--side", type=int, default=4000, help="photo width in pixels (height 3/4 of it)")
    parser.add_argument("--max-pixels", type=int, default=Limits().max_pixels, help="limits.max_pixels")
    parser.add_argument("--mix", type=int, default=30)
    parser.add_argument("--mix-side", type=int, default=1600)
    parser.add_argument("--repeat", type=float, default=0.3)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big = 1 << 30
        settings = Settings.model_validate({
            "model": args.model,
            "data_dir": str(folder / "data"),
            "limits": {"max_pixels": args.max_pixels},
            "fetching": {"local_root": str(folder)},
            "cache": {"scope": "shared", "response": {"enabled": True},
                      "media": {"max_bytes": big, "features_max_bytes": big}, "encoder": {"max_bytes": big}},
        })
        with served(settings) as (url, _), httpx.Client(base_url=url, timeout=900) as client:
            print(f"server {url}: model {args.model}, photos {args.side}x{args.side * 3 // 4} JPEG by path, "
                  f"limits.max_pixels {args.max_pixels}")
            ttft(client, request(photo(1, args.side, folder), sampled=True))  # first-call warm-up of the shapes
            print("media + vision-encoder caches (sampled requests, the response cache cannot answer):")
            media = pairs(client, folder, args, sampled=True)
            print("response cache (greedy requests):")
            responses = pairs(client, folder, args, sampled=False)
            print(f"\n{'time to first token (median)':<34} {'cold ms':>10} {'warm ms':>10} {'warm/cold':>9}  speedup")
            print(report("media + vision-encoder caches", media))
            print(report("response cache", responses))
            mix(client, folder, args)


if __name__ == "__main__":
    main()
