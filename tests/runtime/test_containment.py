"""One request's failure stays with that request: the batch and the engine go on.

Faults are injected into the real tiny model's forward pass (a named wrapper below), keyed on a
marker word in one request's prompt, so exactly one row of a real batch goes bad.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import torch

from vlserve.errors import DecodingError, EngineError, RequestError
from vlserve.runtime.batching import BatchingEngine
from vlserve.runtime.decoding import Decoder, RowState
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, Message, SamplingParams

MARKER = "zebra"


def _ask(text: str, **params: Any) -> GenerationRequest:
    return GenerationRequest([Message("user", text)], SamplingParams(**params))


class _PoisonedForward:
    """Fault injection: the real model, but the prefill of any prompt containing ``token`` either
    raises (``mode="raise"``) or returns NaN scores for that row (``mode="nan"``)."""

    def __init__(self, model: Any, token: int, mode: str) -> None:
        self.model, self.token, self.mode = model, token, mode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ids: torch.Tensor = kwargs["input_ids"]
        bad = (ids == self.token).any(dim=1) if ids.shape[1] > 1 else torch.zeros(ids.shape[0], dtype=torch.bool)
        if self.mode == "raise" and bool(bad.any()):
            raise RuntimeError("index out of range in self (injected)")
        out = self.model(*args, **kwargs)
        if bool(bad.any()):
            out.logits[bad] = math.nan
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _poisoned(engine: LocalEngine, mode: str) -> LocalEngine:
    twin = engine.with_vision(engine.vision)
    token = engine.tokenizer.encode(f" {MARKER}", add_special_tokens=False)[0]
    twin.model = _PoisonedForward(engine.model, token, mode)  # type: ignore[assignment]
    return twin


def _run_together(batcher: BatchingEngine, requests: list[GenerationRequest]) -> list[Any]:
    async def run() -> list[Any]:
        return await asyncio.gather(*(batcher.generate(r) for r in requests), return_exceptions=True)

    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["nan", "raise"])
def test_a_poisoned_request_fails_alone_and_its_neighbours_match_running_alone(engine: LocalEngine,
                                                                              mode: str) -> None:
    broken = _poisoned(engine, mode)
    batcher = BatchingEngine(broken, max_batch=4, window_ms=50)
    innocent = [_ask("Describe a sunny day.", max_tokens=12), _ask("Count to five.", max_tokens=12,
                                                                    temperature=0.7, seed=3)]
    try:
        outcomes = _run_together(batcher, [innocent[0], _ask(f"Tell me about a {MARKER}.", max_tokens=12),
                                           innocent[1]])
        bad = outcomes[1]
        assert isinstance(bad, DecodingError if mode == "nan" else EngineError), bad
        for request, outcome in zip(innocent, (outcomes[0], outcomes[2]), strict=True):
            assert isinstance(outcome, GenerationResult), outcome
            assert outcome.token_ids == engine.generate_sync(request).token_ids
        assert batcher.largest_batch >= 2  # they really shared a batch
    finally:
        batcher.close()


def test_a_row_with_non_finite_scores_fails_alone_in_the_decoder(engine: LocalEngine) -> None:
    decoder = Decoder(decode=engine.detokenize, eos_token_ids=engine.eos_token_ids)
    rows = [RowState(SamplingParams()), RowState(SamplingParams(temperature=0.8, seed=1)),
            RowState(SamplingParams()), RowState(SamplingParams(temperature=0.8, seed=2))]
    scores = torch.randn(4, 64)
    scores[2, 5] = math.inf  # a plain greedy row
    scores[3, 7] = math.nan  # a sampled row
    picks = decoder.choose(rows, scores)
    assert picks[0] == int(scores[0].argmax()) and 0 <= picks[1] < 64
    assert rows[0].error is None and rows[1].error is None
    assert isinstance(rows[2].error, DecodingError) and isinstance(rows[3].error, DecodingError)


@pytest.mark.parametrize("params", [
    {"temperature": 1e-30}, {"temperature": 5e-324}, {"top_p": 1e-30, "temperature": 1.0},
    {"top_k": 1, "temperature": 1e-12}, {"temperature": 2.0, "top_p": 1.0},
])
def test_extreme_but_valid_sampling_values_decode_to_finite_tokens(engine: LocalEngine,
                                                                   params: dict[str, Any]) -> None:
    result = engine.generate_sync(_ask("Hello there.", max_tokens=6, seed=11, **params))
    assert len(result.token_ids) >= 1 and result.confidence is not None and math.isfinite(result.confidence)


@pytest.mark.parametrize("params", [
    {"temperature": math.nan}, {"temperature": -1.0}, {"temperature": math.inf}, {"top_p": 0.0},
    {"top_p": math.nan}, {"repetition_penalty": 1e-30}, {"repetition_penalty": 1e6},
    {"presence_penalty": 1e30}, {"seed": 2**64}, {"seed": -(2**63) - 1}, {"top_k": -1}, {"stop": [""]},
])
def test_unusable_sampling_values_are_refused_before_any_work(engine: LocalEngine,
                                                              params: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as caught:
        engine.prepare(_ask("Hi", max_tokens=4, **params))
    assert caught.value.code == 4000
