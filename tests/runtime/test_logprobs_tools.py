"""Log-probabilities of generated tokens, and tools shown to the model in Qwen3's format."""

from __future__ import annotations

import asyncio
import math

import torch

from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, Message, SamplingParams, TextDelta, ToolCall

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}]


def _ask(text: str, **params: object) -> GenerationRequest:
    return GenerationRequest([Message("user", text)], SamplingParams(**params))  # type: ignore[arg-type]


def test_logprobs_are_the_models_own_and_do_not_change_the_tokens(engine: LocalEngine) -> None:
    plain = engine.generate_sync(_ask("Name a colour.", max_tokens=8))
    result = engine.generate_sync(_ask("Name a colour.", max_tokens=8, logprobs=3))
    assert result.token_ids == plain.token_ids and plain.logprobs is None
    assert result.logprobs is not None and len(result.logprobs) == len(result.token_ids)
    # Recompute the first token's log-probability from the model's logits, independently.
    inputs = engine.prepare(_ask("Name a colour.", max_tokens=8))
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([inputs.input_ids])).logits[0, -1].float()
    expected = torch.log_softmax(logits, -1)
    first = result.logprobs[0]
    assert math.isclose(first.logprob, float(expected[result.token_ids[0]]), abs_tol=1e-4)
    assert len(first.top) == 3 and first.top[0][1] >= first.top[1][1] >= first.top[2][1]
    assert first.top[0][0] == first.token  # greedy: the chosen token is the most likely
    assert "".join(t.token for t in result.logprobs) == result.text


def test_chosen_token_logprobs_of_greedy_rows_match_the_per_row_path(engine: LocalEngine) -> None:
    # logprobs = 0 (what a gateway asks for, for confidence) stays on the vectorised greedy path;
    # logprobs = 1 takes the per-row path. Both report the same tokens and log-probabilities.
    vectorised = engine.generate_sync(_ask("Name a colour.", max_tokens=8, logprobs=0))
    per_row = engine.generate_sync(_ask("Name a colour.", max_tokens=8, logprobs=1))
    assert vectorised.token_ids == per_row.token_ids
    assert vectorised.logprobs is not None and per_row.logprobs is not None
    assert [t.token for t in vectorised.logprobs] == [t.token for t in per_row.logprobs]
    for fast, slow in zip(vectorised.logprobs, per_row.logprobs, strict=True):
        assert fast.top == [] and math.isclose(fast.logprob, slow.logprob, abs_tol=1e-4)
    assert vectorised.confidence is not None and per_row.confidence is not None
    assert math.isclose(vectorised.confidence, per_row.confidence, rel_tol=1e-4)


def test_streamed_deltas_carry_the_logprobs_of_their_tokens(engine: LocalEngine) -> None:
    async def run() -> tuple[list[TextDelta], GenerationResult]:
        deltas, final = [], None
        async for event in engine.stream(_ask("Count.", max_tokens=10, logprobs=0, temperature=0.9, seed=5)):
            if isinstance(event, TextDelta):
                deltas.append(event)
            else:
                final = event
        assert final is not None
        return deltas, final

    deltas, final = asyncio.run(run())
    assert final.logprobs is not None
    streamed = [lp for d in deltas for lp in (d.logprobs or [])]
    assert [lp.logprob for lp in streamed] == [lp.logprob for lp in final.logprobs]
    assert all(lp.top == [] for lp in streamed)


def test_tools_and_tool_history_reach_the_prompt_in_qwen_format(engine: LocalEngine) -> None:
    history = [Message("user", "Weather in Paris?"),
               Message("assistant", "", [ToolCall("get_weather", {"city": "Paris"})]),
               Message("tool", '{"celsius": 21}')]
    request = GenerationRequest(history, SamplingParams(max_tokens=2), tools=TOOLS, prefill="<tool_call>\n")
    prompt = engine.prepare(request).prompt
    assert "<tools>\n" + '{"type": "function", "function": {"name": "get_weather"' in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>' in prompt
    assert "<|im_start|>user\n<tool_response>\n{\"celsius\": 21}\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n<tool_call>\n")
