"""Continuous batching: requests join and leave a running batch between decode steps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vlserve.errors import EngineError
from vlserve.runtime.batching import BatchingEngine
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, ImagePart, TextDelta, VideoPart

from .test_generation import ask, frames, noise_image


@pytest.fixture
def batching(engine: LocalEngine) -> Iterator[BatchingEngine]:
    batcher = BatchingEngine(engine, max_batch=4, window_ms=0)
    yield batcher
    batcher.close()


async def _collect(batcher: BatchingEngine, request: GenerationRequest, started: asyncio.Event | None = None,
                   after: int = 3) -> tuple[GenerationResult, float]:
    """Stream ``request``; set ``started`` once ``after`` deltas arrived. Returns the result and when it came."""
    deltas = []
    async for event in batcher.stream(request):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
            if started is not None and len(deltas) == after:
                started.set()
        else:
            assert "".join(deltas) == event.text
            return event, asyncio.get_running_loop().time()
    raise AssertionError("no final result")


def test_requests_join_a_running_batch_and_match_running_alone(engine: LocalEngine,
                                                               batching: BatchingEngine) -> None:
    long = ask("Tell me everything you know.", max_tokens=120)
    joiners = [
        ask(ImagePart(noise_image(96, 64, 3)), "What is it?", max_tokens=8),
        ask("A longer prompt than the first one, so that the running cache gets left-padded on merge.",
            max_tokens=10),
        ask(VideoPart(frames(4, 10), fps=1.0), "Summarise the clip.", max_tokens=6),
        ask("Sample this.", max_tokens=9, temperature=0.8, top_p=0.9, seed=7),
    ]
    alone = [engine.generate_sync(r) for r in [long, *joiners]]

    async def run() -> list[tuple[GenerationResult, float]]:
        started = asyncio.Event()
        first = asyncio.create_task(_collect(batching, long, started))
        await started.wait()  # the long request is generating: the others join it mid-flight
        rest = await asyncio.gather(*(_collect(batching, r) for r in joiners))
        return [await first, *rest]

    results = asyncio.run(run())
    for (result, _), reference in zip(results, alone, strict=True):
        assert result.token_ids == reference.token_ids
        assert result.usage == reference.usage
    (long_result, long_done), *short = results
    assert batching.joined_running >= 1
    assert max(r.timings["batch_size"] for r, _ in short) >= 2
    # The short ones left the batch as soon as they were done, long before the long one.
    assert all(done < long_done for _, done in short)
    assert long_result.usage.output_tokens == 120


def test_dynamic_batching_reference_waits_for_the_batch_in_flight(engine: LocalEngine) -> None:
    """``continuous=False`` is the reference bench/engine.py compares against: no mid-flight joins."""
    batcher = BatchingEngine(engine, max_batch=4, window_ms=0, continuous=False)
    long, short = ask("Tell me everything you know.", max_tokens=60), ask("Quick one?", max_tokens=4)

    async def run() -> list[tuple[GenerationResult, float]]:
        started = asyncio.Event()
        first = asyncio.create_task(_collect(batcher, long, started))
        await started.wait()
        second = await _collect(batcher, short)
        return [await first, second]

    try:
        (long_result, long_done), (short_result, short_done) = asyncio.run(run())
        assert short_done > long_done  # it waited for the long request's batch to end
        assert batcher.joined_running == 0
        assert short_result.token_ids == engine.generate_sync(short).token_ids
    finally:
        batcher.close()


def test_more_requests_than_rows_all_finish(engine: LocalEngine, batching: BatchingEngine) -> None:
    requests = [ask(f"Question number {i}?", max_tokens=4 + i) for i in range(10)]
    alone = [engine.generate_sync(r).token_ids for r in requests]

    async def run() -> list[GenerationResult]:
        return await asyncio.gather(*(batching.generate(r) for r in requests))

    assert [r.token_ids for r in asyncio.run(run())] == alone
    assert 2 <= batching.largest_batch <= 4


@pytest.mark.parametrize("rows_that_fit", [2, 0])
def test_the_kv_budget_bounds_the_batch(engine: LocalEngine, rows_that_fit: int) -> None:
    requests = [ask(f"Question number {i}?", max_tokens=10) for i in range(5)]
    longest = max(len(engine.prepare(r).input_ids) for r in requests)
    # Room for exactly ``rows_that_fit`` rows at their largest (prompt + every token they may generate);
    # with room for none, each request still runs, alone.
    budget = max(1, rows_that_fit * (longest + 10))
    batcher = BatchingEngine(engine, max_batch=8, max_tokens=budget, window_ms=50)

    async def run() -> list[GenerationResult]:
        return await asyncio.gather(*(batcher.generate(r) for r in requests))

    try:
        assert [r.token_ids for r in asyncio.run(run())] == [engine.generate_sync(r).token_ids for r in requests]
        assert batcher.largest_batch == max(1, rows_that_fit)
    finally:
        batcher.close()


def test_a_consumer_that_leaves_frees_its_row(engine: LocalEngine, batching: BatchingEngine) -> None:
    stay = ask("Keep talking.", max_tokens=40)
    expected = engine.generate_sync(stay).token_ids

    async def run() -> GenerationResult:
        async def leave_early() -> None:
            async for event in batching.stream(ask("Go on forever.", max_tokens=400)):
                if isinstance(event, TextDelta) and event.index == 2:
                    break

        staying = asyncio.create_task(batching.generate(stay))
        await leave_early()
        return await staying

    assert asyncio.run(run()).token_ids == expected
    assert batching.steps_run < 400  # the abandoned row did not run to its budget


class _FailingForward:
    """Fault injection: the real model, whose forward pass raises from the ``n``-th call on."""

    def __init__(self, model: Any, n: int) -> None:
        self.model, self.n, self.calls = model, n, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError("CUDA out of memory (injected)")
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def test_an_engine_failure_reaches_every_request_and_the_engine_recovers(engine: LocalEngine) -> None:
    broken = engine.with_vision(engine.vision)
    broken.model = _FailingForward(engine.model, n=4)  # type: ignore[assignment]
    batcher = BatchingEngine(broken, max_batch=4, window_ms=20)

    async def run() -> list[Any]:
        requests = [ask(f"Question {i}?", max_tokens=30) for i in range(3)]
        return await asyncio.gather(*(batcher.generate(r) for r in requests), return_exceptions=True)

    try:
        outcomes = asyncio.run(run())
        assert all(isinstance(o, EngineError) and "out of memory" in str(o) for o in outcomes)
        broken.model = engine.model  # the fault is gone: the same engine thread serves again
        result = asyncio.run(batcher.generate(ask("Still there?", max_tokens=5)))
        assert result.token_ids == engine.generate_sync(ask("Still there?", max_tokens=5)).token_ids
    finally:
        batcher.close()


def test_closing_fails_the_requests_in_flight(engine: LocalEngine) -> None:
    batcher = BatchingEngine(engine, max_batch=4, window_ms=0)

    async def run() -> BaseException | None:
        try:
            async for event in batcher.stream(ask("Talk for a long time.", max_tokens=400)):
                if isinstance(event, TextDelta) and event.index == 1:
                    batcher.close()
        except EngineError as err:
            return err
        return None

    error = asyncio.run(run())
    assert error is not None and "shut down" in str(error)


def test_min_step_paces_forward_passes_without_changing_the_answer(engine: LocalEngine,
                                                                   batching: BatchingEngine) -> None:
    # scheduling.min_step_ms, for benchmarks only: the tiny model at a GPU deployment's pace.
    paced = BatchingEngine(engine, max_batch=2, window_ms=0, min_step_ms=150)
    try:
        started = time.perf_counter()
        result, _ = asyncio.run(_collect(paced, ask("Count to ten.", max_tokens=6)))
        elapsed, steps = time.perf_counter() - started, paced.steps_run
    finally:
        paced.close()
    plain, _ = asyncio.run(_collect(batching, ask("Count to ten.", max_tokens=6)))
    assert result.text == plain.text and steps >= 1
    # each pass lasts at least 150 ms; the last one's rest comes after its token went out
    assert steps >= 2 and elapsed >= (steps - 1) * 0.15
