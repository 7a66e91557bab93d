"""InferenceService without HTTP and without a model: FakeEngine behind real lanes, in milliseconds.
What the model itself does is tested on the tiny checkpoints (tests/runtime, tests/api)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.api.helpers import make_settings
from tests.api.samples import data_uri, png_bytes
from vlserve import errors
from vlserve.scheduling import Scheduler
from vlserve.schemas import InferRequest
from vlserve.service.inference import InferenceService, Outcome
from vlserve.tasks import get_task
from vlserve.testing import FakeEngine

IMAGE = data_uri(png_bytes(seed=2))


def service(tmp_path: Path, engine: FakeEngine, **overrides: Any) -> InferenceService:
    settings = make_settings(tmp_path, **overrides)
    return InferenceService(settings, Scheduler(settings.scheduling, {"main": engine}))


def request(task: str = "vqa", **fields: Any) -> InferRequest:
    return InferRequest.model_validate({"task": task, "images": [IMAGE], "text": "what is it?", **fields})


def test_a_structured_task_answers_its_schema(tmp_path: Path) -> None:
    engine = FakeEngine("fake")

    async def main() -> Outcome:
        svc = service(tmp_path, engine)
        try:
            return await svc.infer(request("chart_parse"), request_id="req_1", key_id=None)
        finally:
            await svc.aclose()

    outcome = asyncio.run(main())
    schema = get_task("chart_parse").schema()
    assert schema is not None
    assert isinstance(outcome.answer, dict)
    jsonschema.validate(outcome.answer, schema)
    assert outcome.metadata.model == "fake" and outcome.metadata.image_tokens == 16
    assert engine.requests[0].params.json_schema == schema  # the task asked for constrained decoding


def test_streamed_output_is_moderated(tmp_path: Path) -> None:
    engine = FakeEngine("fake", reply="the answer is forbidden-topic indeed")  # make_settings blocks that term
    seen: list[str] = []

    async def main() -> None:
        svc = service(tmp_path, engine)
        try:
            run = await svc.start(request(), request_id="req_2", key_id="alice")
            async for event in svc.events(run):
                seen.append(getattr(event, "text", ""))
        finally:
            await svc.aclose()

    with pytest.raises(errors.SensitiveContentError):
        asyncio.run(main())
    assert "forbidden-topic" not in "".join(seen)  # refused before the term reached the caller
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["request_id"] == "req_2" and audit[-1]["stage"] == "output"


def test_an_engine_failure_is_typed_and_gives_the_lane_place_back(tmp_path: Path) -> None:
    engine = FakeEngine("fake", reply="one two three")
    engine.fail_with(errors.EngineError("the engine broke"), after_tokens=1)

    async def main() -> dict[str, object]:
        svc = service(tmp_path, engine)
        try:
            with pytest.raises(errors.EngineError):
                await svc.infer(request(), request_id="req_3", key_id=None)
            return svc.scheduler.lanes["interactive"].status()
        finally:
            await svc.aclose()

    status = asyncio.run(main())
    assert status["occupancy"] == 0 and status["running"] == 0


def test_a_full_lane_refuses_at_once_without_touching_the_engine(tmp_path: Path) -> None:
    engine = FakeEngine("fake")
    lanes = {"lanes": {"interactive": {"concurrency": 1, "queue_size": 0}}}

    async def main() -> float:
        svc = service(tmp_path, engine, scheduling=lanes)
        try:
            engine.hold()
            first = asyncio.create_task(svc.infer(request(), request_id="req_4", key_id=None))
            while engine.active == 0:
                await asyncio.sleep(0.001)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(errors.OverloadedError):
                await svc.infer(request(), request_id="req_5", key_id=None)
            refused_in = loop.time() - started
            engine.release()
            await first
            return refused_in
        finally:
            await svc.aclose()

    assert asyncio.run(main()) < 0.05
    assert len(engine.requests) == 1
