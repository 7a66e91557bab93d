"""Heavy images decode in niced worker processes and resize on niced threads, with the same
pixels as in-process; ordinary images stay on the image threads; a heavy decode that passes its
worker's limits fails alone with 1001."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from vlserve.config import Limits
from vlserve.errors import ImageError
from vlserve.isolation import WorkerLimits, WorkerPool, image_pool
from vlserve.media import VisionSettings, load_image, load_image_async, preprocess_image, probe_image
from vlserve.media.isolated import is_heavy, load_image_isolated
from vlserve.media.threads import heavy_pool
from vlserve.testing.hostile import float_tiff, small_png

SETTINGS = VisionSettings.from_limits(Limits())


def _png(side: int) -> bytes:
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _niceness(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@pytest.fixture
def tiny_pool() -> Iterator[WorkerPool]:
    pool = WorkerPool("test-image", 1, WorkerLimits(wall_seconds=120, cpu_seconds=120, memory_bytes=64 << 20,
                                                      preload=("numpy", "PIL.Image", "vlserve.media.isolated")))
    yield pool
    pool.close()


def test_heavy_means_many_pixels_or_more_than_8_bits() -> None:
    assert not is_heavy(probe_image(small_png(1, 48), SETTINGS), SETTINGS)
    assert is_heavy(probe_image(float_tiff(64), SETTINGS), SETTINGS)  # float: slow per pixel, whatever its size
    big = _png(400)
    assert not is_heavy(probe_image(big, SETTINGS), SETTINGS)
    lower = replace(SETTINGS, isolate_image_pixels=400 * 400 - 1)
    assert is_heavy(probe_image(big, lower), lower)


def test_a_float_tiff_decodes_in_a_niced_worker_with_the_in_process_pixels() -> None:
    data = float_tiff(600)
    image = asyncio.run(load_image_async(data, SETTINGS))
    assert np.array_equal(np.asarray(image), np.asarray(load_image(data, SETTINGS)))
    workers = image_pool().pids()
    assert workers, "the float TIFF was decoded in the server process"
    mine = _niceness(0)
    assert all(_niceness(pid) >= min(19, mine + SETTINGS.heavy_nice) for pid in workers)


def test_only_heavy_images_go_to_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    import vlserve.media.isolated as isolated

    sent: list[int] = []
    real = isolated.load_image_isolated

    async def counting(data: bytes, settings: VisionSettings, pool: WorkerPool | None = None) -> Image.Image:
        sent.append(len(data))
        return await real(data, settings, pool)

    monkeypatch.setattr(isolated, "load_image_isolated", counting)
    assert asyncio.run(load_image_async(small_png(2, 48), SETTINGS)).size == (48, 48)
    assert sent == []
    assert asyncio.run(load_image_async(float_tiff(32), SETTINGS)).size == (32, 32)
    assert len(sent) == 1


def test_a_heavy_decode_past_its_limits_fails_alone_with_1001(tiny_pool: WorkerPool) -> None:
    with pytest.raises(ImageError) as err:
        asyncio.run(load_image_isolated(float_tiff(4000), SETTINGS, pool=tiny_pool))  # 64 MB of floats alone
    assert err.value.code == 1001  # its MemoryError stayed in the worker
    ok = asyncio.run(load_image_isolated(float_tiff(8), SETTINGS, pool=tiny_pool))  # the next one is fine
    assert ok.size == (8, 8)


def test_large_resizes_run_on_niced_threads_with_the_same_result() -> None:
    tid = heavy_pool(SETTINGS.heavy_nice).submit(threading.get_native_id).result()
    assert _niceness(tid) >= min(19, _niceness(0) + SETTINGS.heavy_nice)
    image = Image.fromarray(np.random.default_rng(5).integers(0, 256, (900, 1400, 3), dtype=np.uint8))
    threaded = preprocess_image(image, replace(SETTINGS, isolate_image_pixels=1))  # resized on a heavy thread
    inline = preprocess_image(image, replace(SETTINGS, isolate_image_pixels=10**9))
    assert np.array_equal(threaded.pixel_values, inline.pixel_values) and threaded.grid_thw == inline.grid_thw
