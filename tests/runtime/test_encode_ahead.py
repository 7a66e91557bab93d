"""A request with a large image runs its vision tower on a niced thread before joining the batch,
so the prefill in the engine thread (which stalls every running row) skips it; the answer is the
one the tower inside the prefill gives."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlserve.runtime.batching import BatchingEngine
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, ImagePart, Message, SamplingParams, TextPart


def _request(image: Image.Image, n: int) -> GenerationRequest:
    return GenerationRequest([Message("user", [ImagePart(image), TextPart(f"Describe picture {n}.")])],
                             SamplingParams(max_tokens=6, temperature=0), request_id=f"ahead-{n}")


def _towers(engine: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads the vision tower runs on, from now on."""
    threads: list[str] = []
    tower = engine.model.get_image_features

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return tower(*args, **kwargs)

    monkeypatch.setattr(engine.model, "get_image_features", spy)
    return threads


def _generate(engine: Any, request: GenerationRequest) -> list[int]:
    batching = BatchingEngine(engine)
    try:
        return asyncio.run(batching.generate(request)).token_ids
    finally:
        batching.close()


def test_a_large_images_tower_runs_ahead_on_a_niced_thread_with_the_same_answer(
        engine: Any, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if engine.encoder_cache is None:
        pytest.skip("this transformers takes no precomputed vision outputs")
    pixels = np.random.default_rng(7).integers(0, 256, (960, 1000, 3), dtype=np.uint8)
    large = Image.fromarray(pixels)
    assert engine.vision.encode_ahead_tokens <= 960 * 1000 // 32 // 32  # it counts as large
    threads = _towers(engine, monkeypatch)
    ahead = _generate(engine, _request(large, 1))
    assert threads and all(name.startswith("vlserve-heavy") for name in threads), threads

    fresh = LocalEngine(tiny_dir, name="tiny")  # caches of its own: nothing of this image in them
    inline_engine = fresh.with_vision(replace(fresh.vision, encode_ahead_tokens=0))
    threads = _towers(inline_engine, monkeypatch)
    assert _generate(inline_engine, _request(large, 1)) == ahead  # the same answer with the tower in the prefill
    assert threads and all(name == "vlserve-engine" for name in threads), threads
