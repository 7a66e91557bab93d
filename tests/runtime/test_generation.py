from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import (
    GenerationRequest,
    GenerationResult,
    ImagePart,
    Message,
    SamplingParams,
    TextDelta,
    TextPart,
    VideoPart,
)


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def frames(n: int, seed: int = 0) -> list[Image.Image]:
    return [noise_image(64, 48, seed + i) for i in range(n)]


def ask(*parts: object, **params: object) -> GenerationRequest:
    content = [p if not isinstance(p, str) else TextPart(p) for p in parts]
    return GenerationRequest([Message("user", content)], SamplingParams(**params))  # type: ignore[arg-type]


def direct_generate(engine: LocalEngine, request: GenerationRequest) -> list[int]:
    """transformers' own greedy generate on the same prepared inputs."""
    inputs = engine.prepare(request)
    batch = engine.collate([inputs])
    out = engine.model.generate(**batch, max_new_tokens=request.params.max_tokens, do_sample=False)
    tokens = out[0, batch["input_ids"].shape[1] :].tolist()
    for i, t in enumerate(tokens):
        if t in engine.eos_token_ids:
            return tokens[:i]
    return tokens


def test_greedy_equals_direct_generate_text(engine: LocalEngine) -> None:
    request = ask("Describe a red bicycle.", max_tokens=24)
    assert engine.generate_sync(request).token_ids == direct_generate(engine, request)


def test_greedy_equals_reference_processor_and_generate_with_image(engine: LocalEngine, tiny_dir: Path) -> None:
    """Whole-pipeline check against transformers' own pieces: its PIL image processor, the
    placeholder expansion of Qwen3VLProcessor.replace_image_token (the processor class itself
    cannot be built without torchvision), the tokenizer, and model.generate."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image = noise_image(200, 120, seed=1)
    request = ask(ImagePart(image), "What is this?", max_tokens=16)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    reference = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": engine.vision.min_pixels, "longest_edge": engine.vision.max_pixels},
    )
    pixels = reference(images=[image], return_tensors="pt")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}],
        tokenize=False, add_generation_prompt=True,
    )
    n_pads = int(pixels["image_grid_thw"][0].prod()) // 4
    ids = tokenizer(prompt.replace("<|image_pad|>", "<|image_pad|>" * n_pads), return_tensors="pt")["input_ids"]
    types = (ids == 151655).long()

    ours = engine.prepare(request)
    assert ours.input_ids == ids[0].tolist()
    assert ours.mm_token_type_ids == types[0].tolist()
    assert np.array_equal(ours.vision_kwargs()["pixel_values"], pixels["pixel_values"].numpy())
    out = engine.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), mm_token_type_ids=types,
        pixel_values=pixels["pixel_values"], image_grid_thw=pixels["image_grid_thw"],
        max_new_tokens=16, do_sample=False,
    )
    expected = out[0, ids.shape[1] :].tolist()
    got = engine.generate_sync(request)
    assert got.token_ids == expected[: len(got.token_ids)]
    assert got.usage.image_tokens == ours.image_tokens == n_pads


def test_greedy_equals_direct_generate_with_video(engine: LocalEngine) -> None:
    request = ask(VideoPart(frames(6), fps=2.0), "What happens?", max_tokens=12)
    inputs = engine.prepare(request)
    # 6 frames at 2 fps → 3 temporal groups at the mean time of their two frames.
    for stamp in ("<0.2 seconds>", "<1.2 seconds>", "<2.2 seconds>"):
        assert stamp + "<|vision_start|><|video_pad|>" in inputs.prompt
    assert engine.generate_sync(request).token_ids == direct_generate(engine, request)


def test_stream_concatenation_equals_answer(engine: LocalEngine) -> None:
    request = ask(ImagePart(noise_image(64, 64, 2)), "Tell me a story.", max_tokens=30)
    events = list(engine.iter_stream(request))
    deltas, final = events[:-1], events[-1]
    assert isinstance(final, GenerationResult)
    assert all(isinstance(d, TextDelta) for d in deltas)
    assert [d.index for d in deltas] == list(range(len(deltas)))  # type: ignore[union-attr]
    assert "".join(d.text for d in deltas) == final.text  # type: ignore[union-attr]
    assert final.text == engine.generate_sync(request).text


def test_async_stream_and_generate(engine: LocalEngine) -> None:
    request = ask("Count to ten.", max_tokens=10)

    async def run() -> tuple[str, GenerationResult, GenerationResult]:
        pieces = []
        final = None
        async for event in engine.stream(request):
            if isinstance(event, TextDelta):
                pieces.append(event.text)
            else:
                final = event
        assert final is not None
        return "".join(pieces), final, await engine.generate(request)

    text, final, plain = asyncio.run(run())
    assert text == final.text == plain.text


def test_batched_equals_unbatched(engine: LocalEngine) -> None:
    requests = [
        ask("hello", max_tokens=20),
        ask(ImagePart(noise_image(96, 64, 3)), "What is it?", max_tokens=8),
        ask(ImagePart(noise_image(40, 300, 4)), ImagePart(noise_image(128, 128, 5)), "Compare.", max_tokens=15),
        ask(VideoPart(frames(4, 10), fps=1.0), "Summarise the clip.", max_tokens=11),
        ask("A much longer prompt, so that the others are left-padded in the batch.", max_tokens=5),
    ]
    alone = [engine.generate_sync(r) for r in requests]
    together = engine.generate_batch(requests)
    for a, b in zip(alone, together, strict=True):
        assert a.token_ids == b.token_ids
        assert a.usage == b.usage
        assert b.confidence == pytest.approx(a.confidence, rel=1e-4)


CHART_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "kind": {"enum": ["bar", "line", "pie"]},
        "series": {
            "type": "array",
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "values": {"type": "array", "items": {"type": "number"}}},
                "required": ["name", "values"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["title", "kind", "series"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", [None, 1, 2])
def test_constrained_output_parses_against_schema(engine: LocalEngine, seed: int | None) -> None:
    params = {"max_tokens": 80, "json_schema": CHART_SCHEMA}
    if seed is not None:
        params.update(temperature=1.0, seed=seed)
    result = engine.generate_sync(ask(ImagePart(noise_image(64, 64, 6)), "Parse the chart.", **params))
    assert len(result.token_ids) <= 80
    jsonschema.validate(json.loads(result.text), CHART_SCHEMA)


def test_sampling_is_reproducible_with_a_seed(engine: LocalEngine) -> None:
    def sample(seed: int) -> list[int]:
        return engine.generate_sync(ask("Say something.", max_tokens=12, temperature=1.0, top_p=0.9, top_k=100,
                                        seed=seed)).token_ids

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    # In a batch, each row keeps its own seed and settings.
    batch = engine.generate_batch([ask("Say something.", max_tokens=12, temperature=1.0, top_p=0.9, top_k=100,
                                       seed=s) for s in (7, 8)])
    assert [r.token_ids for r in batch] == [sample(7), sample(8)]


def test_top_k_one_is_greedy_and_penalties_change_output(engine: LocalEngine) -> None:
    greedy = engine.generate_sync(ask("Repeat repeat repeat.", max_tokens=20))
    top1 = engine.generate_sync(ask("Repeat repeat repeat.", max_tokens=20, temperature=0.7, top_k=1, seed=0))
    assert top1.token_ids == greedy.token_ids
    penalised = engine.generate_sync(ask("Repeat repeat repeat.", max_tokens=20, repetition_penalty=10.0,
                                         presence_penalty=2.0))
    assert len(set(penalised.token_ids)) == len(penalised.token_ids)  # no token repeats under a huge penalty


def test_stop_strings_and_max_tokens(engine: LocalEngine) -> None:
    full = engine.generate_sync(ask("Write.", max_tokens=30))
    assert full.finish_reason == "length" and full.usage.output_tokens == 30
    stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 2]
    cut = engine.generate_sync(ask("Write.", max_tokens=30, stop=[stop]))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    streamed = "".join(e.text for e in engine.iter_stream(ask("Write.", max_tokens=30, stop=[stop]))
                       if isinstance(e, TextDelta))
    assert streamed == cut.text


def test_usage_and_confidence(engine: LocalEngine) -> None:
    result = engine.generate_sync(ask(ImagePart(noise_image(320, 240, 8)), "Hi", max_tokens=7))
    assert result.usage.output_tokens == 7
    assert result.usage.image_tokens > 0 and result.usage.video_tokens == 0
    assert result.usage.input_tokens > result.usage.image_tokens
    assert 0.0 < result.confidence <= 1.0  # type: ignore[operator]
    assert result.activated_experts is None  # dense model
    # confidence is the geometric mean of the chosen tokens' probabilities: recompute it.
    inputs = engine.prepare(ask(ImagePart(noise_image(320, 240, 8)), "Hi", max_tokens=7))
    batch = engine.collate([inputs])
    ids = torch.cat([batch["input_ids"], torch.tensor([result.token_ids])], dim=1)
    with torch.no_grad():
        logits = engine.model(**{**batch, "input_ids": ids, "attention_mask": torch.ones_like(ids),
                                 "mm_token_type_ids": torch.nn.functional.pad(batch["mm_token_type_ids"],
                                                                              (0, 7))}).logits
    n = batch["input_ids"].shape[1]
    logp = torch.log_softmax(logits[0, n - 1 : -1].float(), -1).gather(1, torch.tensor(result.token_ids)[:, None])
    assert result.confidence == pytest.approx(float(logp.mean().exp()), rel=1e-3)


def test_moe_expert_figure(moe_engine: LocalEngine) -> None:
    short = moe_engine.generate_sync(ask("a", max_tokens=1))
    long = moe_engine.generate_sync(ask(ImagePart(noise_image(128, 96, 9)), "Describe everything.", max_tokens=20))
    for result in (short, long):
        assert result.activated_experts is not None
        assert 1 <= result.activated_experts <= 8
        assert len(result.experts_per_layer or []) == 2
        assert all(2 <= n <= 8 for n in result.experts_per_layer or [])
    assert long.activated_experts >= short.activated_experts  # type: ignore[operator]
    batch = moe_engine.generate_batch([ask("a", max_tokens=1), ask(ImagePart(noise_image(128, 96, 9)),
                                                                   "Describe everything.", max_tokens=20)])
    assert [r.experts_per_layer for r in batch] == [short.experts_per_layer, long.experts_per_layer]
    assert [r.token_ids for r in batch] == [short.token_ids, long.token_ids]


def test_cancellation_stops_generation(engine: LocalEngine) -> None:
    import threading

    cancel = threading.Event()
    events = []
    for event in engine.iter_stream(ask("Go on forever.", max_tokens=200), cancel):
        events.append(event)
        if len(events) == 3:
            cancel.set()
    final = events[-1]
    assert isinstance(final, GenerationResult)
    assert final.finish_reason == "cancelled"
    assert final.usage.output_tokens < 200


def test_bad_requests_are_typed_errors(engine: LocalEngine) -> None:
    from vlserve.errors import RequestError, VideoError

    with pytest.raises(RequestError, match="max_tokens"):
        engine.generate_sync(ask("x", max_tokens=0))
    with pytest.raises(VideoError):
        engine.generate_sync(ask(VideoPart(b"definitely not a video"), "x", max_tokens=2))
    with pytest.raises(RequestError, match="schema"):
        bad_schema = {"type": "object", "properties": {"a": {"type": "frob"}}}
        engine.generate_sync(ask("x", max_tokens=5, json_schema=bad_schema))
