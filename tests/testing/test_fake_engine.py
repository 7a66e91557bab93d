"""FakeEngine: the engine protocol, deterministic, with delays, holds and failures that tests control."""

from __future__ import annotations

import asyncio
import json
import time

import jsonschema
import pytest

from vlserve.errors import EngineError, OverloadedError
from vlserve.runtime.protocol import (
    Engine,
    GenerationRequest,
    GenerationResult,
    ImagePart,
    Message,
    SamplingParams,
    TextDelta,
    TextPart,
)
from vlserve.tasks import TASKS
from vlserve.testing import FakeEngine, schema_instance


def ask(text: str, **params: object) -> GenerationRequest:
    return GenerationRequest([Message("user", [TextPart(text)])], SamplingParams(**params))  # type: ignore[arg-type]


async def collect(engine: FakeEngine, request: GenerationRequest) -> list[object]:
    return [event async for event in engine.stream(request)]


def test_implements_the_engine_protocol() -> None:
    engine = FakeEngine("fake")
    assert isinstance(engine, Engine)
    assert asyncio.run(engine.health()).ready
    engine.close()
    assert not asyncio.run(engine.health()).ready
    with pytest.raises(EngineError):
        asyncio.run(engine.generate(ask("hi")))


def test_streams_words_then_one_result_and_is_deterministic() -> None:
    engine = FakeEngine("fake", reply="a red square on white")
    events = asyncio.run(collect(engine, ask("What is it?")))
    deltas, final = events[:-1], events[-1]
    assert [d.text for d in deltas] == ["a", " red", " square", " on", " white"]  # type: ignore[union-attr]
    assert all(isinstance(d, TextDelta) for d in deltas) and isinstance(final, GenerationResult)
    assert final.text == "a red square on white" and final.finish_reason == "stop"
    assert final.usage.output_tokens == 5 and final.model == "fake"
    assert asyncio.run(engine.generate(ask("What is it?"))).text == final.text
    assert len(engine.requests) == 2


def test_max_tokens_cuts_the_answer_and_usage_counts_media() -> None:
    from PIL import Image

    engine = FakeEngine()
    request = GenerationRequest([Message("user", [ImagePart(Image.new("RGB", (8, 8))), TextPart("describe this")])],
                                SamplingParams(max_tokens=2))
    result = asyncio.run(engine.generate(request))
    assert result.finish_reason == "length" and result.usage.output_tokens == 2
    assert result.usage.image_tokens == 16 and result.usage.input_tokens == 16 + 2
    shouting = FakeEngine(reply=lambda r: r.messages[0].parts[-1].text.upper())  # type: ignore[union-attr]
    assert asyncio.run(shouting.generate(ask("hello there"))).text == "HELLO THERE"


@pytest.mark.parametrize("name", sorted(n for n, t in TASKS.items() if t.schema() is not None))
def test_structured_tasks_get_schema_valid_answers(name: str) -> None:
    schema = TASKS[name].schema()
    assert schema is not None
    jsonschema.validate(schema_instance(schema), schema)
    result = asyncio.run(FakeEngine().generate(ask("x", json_schema=schema, max_tokens=4096)))
    jsonschema.validate(json.loads(result.text), schema)


def test_hold_parks_requests_until_release() -> None:
    engine = FakeEngine()

    async def main() -> tuple[bool, int, int]:
        engine.hold()
        running = [asyncio.create_task(engine.generate(ask(f"q{i}"))) for i in range(3)]
        await asyncio.sleep(0.05)
        parked = not any(t.done() for t in running)
        active = engine.active
        engine.release()
        await asyncio.gather(*running)
        return parked, active, engine.active

    parked, active, after = asyncio.run(main())
    assert parked and active == 3 and after == 0 and engine.peak == 3


def test_failures_before_and_after_tokens() -> None:
    engine = FakeEngine(reply="one two three")
    engine.fail_with(OverloadedError("busy"))
    with pytest.raises(OverloadedError):
        asyncio.run(engine.generate(ask("x")))
    engine.fail_with(EngineError("broke mid-answer"), after_tokens=2)
    seen: list[object] = []

    async def consume() -> None:
        async for event in engine.stream(ask("x")):
            seen.append(event)

    with pytest.raises(EngineError, match="mid-answer"):
        asyncio.run(consume())
    assert [e.text for e in seen] == ["one", " two"]  # type: ignore[attr-defined]
    engine.fail_with(None)
    assert asyncio.run(engine.generate(ask("x"))).text == "one two three"
    assert engine.active == 0


def test_delays_pace_the_stream() -> None:
    engine = FakeEngine(reply="a b c", first_token_delay=0.05, token_delay=0.02)
    started = time.perf_counter()
    result = asyncio.run(engine.generate(ask("x")))
    assert time.perf_counter() - started >= 0.09
    assert result.timings["ttft_ms"] >= 45


def test_logprobs_when_asked() -> None:
    engine = FakeEngine(reply="red square")
    events = asyncio.run(collect(engine, ask("x", logprobs=3)))
    deltas, final = events[:-1], events[-1]
    assert [d.logprobs[0].token for d in deltas] == ["red", " square"]  # type: ignore[union-attr]
    assert isinstance(final, GenerationResult) and final.logprobs is not None
    assert [(t.logprob, len(t.top)) for t in final.logprobs] == [(0.0, 3), (0.0, 3)]
    assert final.logprobs[0].top[0] == ("red", 0.0) and final.logprobs[0].top[1][1] < -5
    assert asyncio.run(engine.generate(ask("x"))).logprobs is None
