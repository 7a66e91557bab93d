"""What isolation costs and what it buys: worker processes for PDFs and videos, a pool of its own for images.

Run from the repository root::

    python bench/isolation.py [--quick]

1. Overhead: the same video decode and PDF render in this process and in an isolated worker
   (results checked equal), best of several runs, wall-clock ms. The worker is warm (started once
   before timing), as it is in a running server.
2. Benefit: how long one ordinary image decode waits while slow PDFs (thousands of drawing
   operators each, a few KB) are being rendered. "before" is the old arrangement: PDFs rendered by
   ``asyncio.to_thread`` in the event loop's default executor, which images also used; "after" is
   ``render_pdf_isolated`` (worker processes, killed at their limit) and ``load_image_async``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pypdfium2 as pdfium  # type: ignore[import-untyped]
from PIL import Image

try:
    import vlserve  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vlserve.inputs import render_pdf, render_pdf_isolated  # noqa: E402
from vlserve.isolation import WorkerLimits, WorkerPool  # noqa: E402
from vlserve.media import VisionSettings, load_image, load_image_async, load_video  # noqa: E402
from vlserve.testing.hostile import slow_pdf  # noqa: E402


def best_ms(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best, result


def make_video(width: int, height: int, seconds: int, fps: int = 30) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with av.open(buf, "w", format="mp4") as container:
        stream: Any = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i * 4, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def make_pdf(pages: int) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(612, 792)
    buf = io.BytesIO()
    document.save(buf)
    document.close()
    return buf.getvalue()


make_slow_pdf = slow_pdf  # a few KB, seconds of PDFium work


def overhead(runs: int) -> None:
    settings = VisionSettings()
    video = make_video(1280, 720, 5)
    video_pool = WorkerPool("bench-video", 1, WorkerLimits(wall_seconds=120, cpu_seconds=480, memory_bytes=2 << 30))
    pdf_pool = WorkerPool("bench-pdf", 1, WorkerLimits(wall_seconds=60, cpu_seconds=60, memory_bytes=1 << 30))
    pdf = make_pdf(3)
    try:
        load_video(video, settings, pool=video_pool)  # start the worker
        asyncio.run(render_pdf_isolated(pdf, pool=pdf_pool))
        here_ms, here = best_ms(lambda: load_video(video, settings, isolated=False), runs)
        there_ms, there = best_ms(lambda: load_video(video, settings, pool=video_pool), runs)
        assert np.array_equal(here.pixel_values, there.pixel_values)
        rows = [("video 1280x720 5 s h264", here_ms, there_ms, f"{there.pixel_values.nbytes / 2**20:.0f} MiB back")]
        here_ms, doc = best_ms(lambda: render_pdf(pdf), runs)
        there_ms, doc2 = best_ms(lambda: asyncio.run(render_pdf_isolated(pdf, pool=pdf_pool)), runs)
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(doc.pages, doc2.pages, strict=True))
        rows.append(("PDF 3 letter pages at 144 dpi", here_ms, there_ms, "3 x 1224x1584 RGB back"))
    finally:
        video_pool.close()
        pdf_pool.close()
    print(f"\n1. Overhead of isolation (best of {runs}, ms)")
    print(f"{'input':34} {'in process':>11} {'isolated':>10} {'ratio':>7}  transfer")
    for name, a, b, note in rows:
        print(f"{name:34} {a:11.1f} {b:10.1f} {b / a:6.2f}x  {note}")


async def image_wait_before(slow: bytes, image: bytes, pdfs: int) -> float:
    settings = VisionSettings()
    loop = asyncio.get_running_loop()
    tasks = [loop.run_in_executor(None, render_pdf, slow) for _ in range(pdfs)]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await asyncio.to_thread(load_image, image, settings)
    waited = (time.perf_counter() - started) * 1000
    await asyncio.gather(*tasks, return_exceptions=True)
    return waited


async def image_wait_after(slow: bytes, image: bytes, pdfs: int, pool: WorkerPool) -> float:
    settings = VisionSettings()
    tasks = [asyncio.ensure_future(render_pdf_isolated(slow, pool=pool)) for _ in range(pdfs)]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await load_image_async(image, settings)
    waited = (time.perf_counter() - started) * 1000
    await asyncio.gather(*tasks, return_exceptions=True)
    return waited


def benefit(strokes: int, repeats: int) -> None:
    import os

    slow = make_slow_pdf(strokes)
    buf = io.BytesIO()
    Image.new("RGB", (1280, 720), "teal").save(buf, "JPEG")
    image = buf.getvalue()
    pdfs = min(32, (os.cpu_count() or 1) + 4) + 2  # one more than the default executor's threads, and then some
    started = time.perf_counter()
    render_pdf(slow)
    one_pdf = (time.perf_counter() - started) * 1000
    pool = WorkerPool("bench-slow-pdf", 2, WorkerLimits(wall_seconds=2, cpu_seconds=2, memory_bytes=1 << 30,
                                                         preload=("pypdfium2", "vlserve.inputs.documents")))
    try:
        asyncio.run(render_pdf_isolated(make_pdf(1), pool=pool))
        before = [asyncio.run(image_wait_before(slow, image, pdfs)) for _ in range(repeats)]
        after = [asyncio.run(image_wait_after(slow, image, pdfs, pool)) for _ in range(repeats)]
    finally:
        pool.close()
    print(f"\n2. One 1280x720 JPEG decode while {pdfs} slow PDFs render ({len(slow):,} bytes each, "
          f"{one_pdf:.0f} ms of PDFium work each), median of {repeats}, ms")
    print(f"{'':34} {'before':>11} {'after':>10} {'ratio':>7}")
    b, a = statistics.median(before), statistics.median(after)
    print(f"{'image decode latency':34} {b:11.1f} {a:10.1f} {b / a:6.1f}x faster")


def main() -> None:
    logging.getLogger("vlserve.isolation").setLevel(logging.ERROR)  # the slow PDFs are stopped on purpose
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs, a lighter slow PDF")
    args = parser.parse_args()
    overhead(2 if args.quick else 4)
    benefit(2_000 if args.quick else 4_000, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
