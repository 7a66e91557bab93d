"""The vision-encoder cache in the embedded engine, on the real tiny model: a repeated image skips
the vision tower (counted by a forward hook on the tower itself) and the model's output is
bit-identical to the uncached path, alone and beside images that are not cached."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlserve.cache.encoder import VisionEncoderCache
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, ImagePart, Message, SamplingParams, TextPart


def picture(seed: int, size: tuple[int, int] = (96, 128)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def ask(engine: Any, *images: Image.Image, scope: str = "") -> GenerationResult:
    parts = [*(ImagePart(i) for i in images), TextPart("Describe.")]
    request = GenerationRequest([Message("user", parts)], SamplingParams(max_tokens=6, logprobs=2),
                                cache_scope=scope)
    return engine.generate_sync(request)  # type: ignore[no-any-return]


def same(a: GenerationResult, b: GenerationResult, *, exact: bool = True) -> bool:
    """Same tokens and bit-identical log-probabilities (the model saw identical vision outputs);
    ``exact=False``: log-probabilities within float tolerance."""
    assert a.logprobs is not None and b.logprobs is not None
    if exact:
        return a.token_ids == b.token_ids and [(t.logprob, t.top) for t in a.logprobs] == \
            [(t.logprob, t.top) for t in b.logprobs]
    return a.token_ids == b.token_ids and np.allclose([t.logprob for t in a.logprobs], [t.logprob for t in b.logprobs],
                                                      rtol=1e-4, atol=1e-4)


@contextmanager
def encoder(engine: Any, cache: VisionEncoderCache | None) -> Iterator[list[int]]:
    """The engine with ``cache`` as its encoder cache; yields a list counting the images the
    vision tower encoded (one entry per tower call: its number of images)."""
    calls: list[int] = []
    hook = engine.model.model.visual.register_forward_hook(
        lambda _m, args, kwargs, _out: calls.append(len(kwargs["grid_thw"])), with_kwargs=True)
    before, engine.encoder_cache = engine.encoder_cache, cache
    try:
        yield calls
    finally:
        engine.encoder_cache = before
        hook.remove()


def test_a_repeated_image_skips_the_tower_with_identical_output(engine: Any) -> None:
    image = picture(1)
    with encoder(engine, None) as calls:
        reference = ask(engine, image)
        assert calls == [1]
    with encoder(engine, VisionEncoderCache(64 << 20)) as calls:
        first, second = ask(engine, image), ask(engine, image)
        assert calls == [1]  # the second request did not run the tower
        assert engine.encoder_cache.stats.hits == 1
    assert same(reference, first) and same(reference, second)


def test_cached_and_new_images_together_match_the_uncached_path(engine: Any) -> None:
    a, b = picture(2), picture(3, (64, 64))
    with encoder(engine, None):
        reference = ask(engine, b, a)
    with encoder(engine, VisionEncoderCache(64 << 20)) as calls:
        ask(engine, a)
        mixed = ask(engine, b, a)
        assert calls == [1, 1]  # the second call encoded only b
    # On CPU bit-identical too; a GPU may tile the tower's matrix products differently for one image
    # than for two (the cached a was encoded alone), so there within float tolerance.
    assert same(reference, mixed, exact=str(engine.device) == "cpu")


def test_a_changed_pixel_or_scope_never_hits(engine: Any) -> None:
    image = picture(4)
    changed = np.asarray(image).copy()
    changed[10, 10, 0] ^= 1
    with encoder(engine, VisionEncoderCache(64 << 20)) as calls:
        ask(engine, image)
        ask(engine, Image.fromarray(changed))
        ask(engine, image, scope="key:bob")
        assert calls == [1, 1, 1]
        ask(engine, image)
        assert calls == [1, 1, 1]


def test_the_byte_bound_evicts(engine: Any) -> None:
    with encoder(engine, VisionEncoderCache(64 << 20)):
        ask(engine, picture(5))
        one = engine.encoder_cache.stats.bytes  # one image's embeddings and DeepStack features
    cache = VisionEncoderCache(int(one * 1.5))
    with encoder(engine, cache) as calls:
        ask(engine, picture(5))
        ask(engine, picture(6))  # pushes 5 out
        ask(engine, picture(5))
        assert calls == [1, 1, 1]
        assert cache.stats.evictions >= 1 and cache.stats.bytes <= cache.stats.capacity


def test_the_forward_outputs_are_bit_identical(engine: Any) -> None:
    """The prefill logits themselves, cached vs not (not only the chosen tokens)."""
    from vlserve.runtime.running import RunningBatch

    image = picture(7)

    def logits() -> torch.Tensor:
        seq = engine.sequence(GenerationRequest([Message("user", [ImagePart(image), TextPart("What?")])],
                                                SamplingParams(max_tokens=1)))
        batch = engine.collate([seq.inputs])
        positions, _ = engine.prefill_positions(batch)
        with torch.inference_mode():
            out = RunningBatch(engine)._forward([seq], batch["attention_mask"], batch, position_ids=positions)
        return out.logits

    with encoder(engine, None):
        reference = logits()
    with encoder(engine, VisionEncoderCache(64 << 20)):
        logits()
        cached = logits()
        assert engine.encoder_cache.stats.hits == 1
    assert torch.equal(reference, cached)


def test_a_repeated_video_skips_decoding_and_the_tower_with_identical_output(engine: Any) -> None:
    from vlserve.runtime.protocol import VideoPart
    from vlserve.testing.videos import timeline_video

    video = timeline_video(2.0, fps=4, width=64, height=48)

    def ask_video() -> GenerationResult:
        parts = [VideoPart(video, fps=2.0), TextPart("What happens?")]
        return engine.generate_sync(GenerationRequest([Message("user", parts)],  # type: ignore[no-any-return]
                                                      SamplingParams(max_tokens=6, logprobs=2)))

    with encoder(engine, None):
        reference = ask_video()
    features = engine.features.stats
    with encoder(engine, VisionEncoderCache(64 << 20)) as calls:
        decoded = features.stored
        first, second = ask_video(), ask_video()
        assert calls == [1]  # the second request did not run the tower
        assert features.stored == decoded  # decoded once, by the uncached reference run
    assert same(reference, first) and same(reference, second)
