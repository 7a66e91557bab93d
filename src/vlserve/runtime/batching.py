"""Dynamic batching over the embedded engine.

Concurrent requests are prepared (media decoded, prompt tokenized) in a thread pool as they
arrive — overlapping with the batch being generated — and then generated together: when the
model is free, every prepared request waiting (up to ``max_batch``; the batch waits
``window_ms`` for more, and up to 100 ms while admitted requests are still being prepared)
joins one ``generate_batch`` call. Each request keeps its own stream, stop
conditions and sampling settings, and its greedy output is identical to running it alone.

Requests join only between batches (dynamic batching); joining a running batch between decode
steps (continuous batching) is not done yet.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vlserve.runtime.local import LocalEngine
from vlserve.runtime.prompt import ModelInputs
from vlserve.runtime.protocol import EngineHealth, GenerationRequest, GenerationResult, StreamEvent, TextDelta

_DONE = object()


@dataclass
class _Pending:
    request: GenerationRequest
    inputs: ModelInputs
    events: asyncio.Queue[Any]
    loop: asyncio.AbstractEventLoop
    cancel: threading.Event = field(default_factory=threading.Event)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def put(self, item: object) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, item)


class BatchingEngine:
    """An :class:`~vlserve.runtime.protocol.Engine` that batches concurrent requests."""

    def __init__(self, engine: LocalEngine, *, max_batch: int = 8, window_ms: float = 5.0,
                 prepare_workers: int = 4) -> None:
        self.engine = engine
        self.model_name = engine.model_name
        self.max_batch = max_batch
        self.window = window_ms / 1000.0
        self._prepare_pool = ThreadPoolExecutor(prepare_workers, thread_name_prefix="vlserve-prepare")
        self._pending: list[_Pending] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches_run = 0
        self.largest_batch = 0
        self._preparing = 0  # requests whose media is being prepared: they will want to join
        self.max_wait = max(self.window, 0.1)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = None
        async for event in self.stream(request):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        self._preparing += 1
        try:
            inputs = await loop.run_in_executor(self._prepare_pool, self.engine.prepare, request)
        finally:
            self._preparing -= 1
        pending = _Pending(request, inputs, asyncio.Queue(), loop)
        self._pending.append(pending)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        try:
            while (event := await pending.events.get()) is not _DONE:
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            pending.cancel.set()  # a consumer that leaves early stops its row at the next token
            if pending in self._pending:
                self._pending.remove(pending)

    async def _run(self) -> None:
        while self._pending:
            await self._gather()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self.batches_run += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            await asyncio.to_thread(self._generate, batch)

    async def _gather(self) -> None:
        """Let requests arriving together share the batch: wait ``window``, and a little longer
        (up to ``max_wait``) while requests already admitted are still being prepared."""
        if self.window <= 0:
            return
        start = time.perf_counter()
        await asyncio.sleep(self.window)
        while (len(self._pending) < self.max_batch and self._preparing > 0
               and time.perf_counter() - start < self.max_wait):
            await asyncio.sleep(0.002)

    def _generate(self, batch: list[_Pending]) -> None:
        def on_delta(row: int, text: str) -> None:
            item = batch[row]
            item.put(TextDelta(text, next(item.counter)))

        try:
            results = self.engine.generate_batch(
                [p.request for p in batch], prepared=[p.inputs for p in batch], on_delta=on_delta,
                cancels=[p.cancel for p in batch],
            )
        except BaseException as err:  # every request of the batch learns of the failure
            for p in batch:
                p.put(err)
                p.put(_DONE)
            return
        for p, result in zip(batch, results, strict=True):
            p.put(result)
            p.put(_DONE)

    async def health(self) -> EngineHealth:
        health = await self.engine.health()
        health.detail.update(batches_run=self.batches_run, largest_batch=self.largest_batch)
        return health

    def close(self) -> None:
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
