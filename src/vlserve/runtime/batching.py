"""Continuous batching over the embedded engine.

Concurrent requests are prepared (media decoded, prompt tokenized) in a thread pool as they
arrive, overlapping with generation. One engine thread drives a
:class:`~vlserve.runtime.running.RunningBatch`: between two decode steps it admits every prepared
request waiting (up to ``max_batch`` rows), and a request leaves the batch the step it finishes.
So a request that arrives while others are generating starts at the next step instead of waiting
for the whole batch to end.

``max_tokens`` bounds the batch's KV cache at its largest: rows times (the longest prompt plus
the most tokens a row may still generate), because rows are left-padded to the longest and the
cache grows by one column per step. A request that does not fit waits for rows to finish.

When the engine is idle, the first arrival waits ``window_ms`` (and up to 100 ms while requests
already admitted are still being prepared) so that requests arriving together share one prefill.

Each request keeps its own stream, stop conditions and sampling settings, and its greedy output
is identical to running it alone.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vlserve.cache.lru import CacheStats
from vlserve.errors import EngineError
from vlserve.media.threads import heavy_pool
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import EngineHealth, GenerationRequest, GenerationResult, StreamEvent, TextDelta
from vlserve.runtime.running import RunningBatch, Sequence

_STOP = None


class BatchingEngine:
    """An :class:`~vlserve.runtime.protocol.Engine` that batches concurrent requests continuously."""

    def __init__(self, engine: LocalEngine, *, max_batch: int = 8, max_tokens: int = 131072,
                 window_ms: float = 5.0, prepare_workers: int = 4, continuous: bool = True,
                 min_step_ms: float = 0.0) -> None:
        self.engine = engine
        self.model_name = engine.model_name
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.continuous = continuous  # False: requests join only an empty batch (dynamic batching)
        self.window = window_ms / 1000.0
        self.max_wait = max(self.window, 0.1)
        self.min_step = min_step_ms / 1000.0  # benchmarks only: a GPU's pace for the tiny model
        self._prepare_pool = ThreadPoolExecutor(prepare_workers, thread_name_prefix="vlserve-prepare")
        self._inbox: queue.SimpleQueue[Sequence | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._preparing = 0  # requests whose media is being prepared: they will want to join
        self.steps_run = 0
        self.largest_batch = 0
        self.joined_running = 0  # requests admitted while others were mid-generation
        self.rows = 0  # rows in the running batch, as of the last step
        self.waiting = 0  # prepared requests waiting for a row

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = None
        async for event in self.stream(request):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        counter = itertools.count()

        def put(item: object) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)

        self._preparing += 1
        try:
            seq = await loop.run_in_executor(self._prepare_pool, lambda: self.engine.sequence(
                request, emit=lambda text, lps: put(TextDelta(text, next(counter), lps)),
                on_finish=lambda s: put(self.engine.result(s)), on_error=put))
        finally:
            self._preparing -= 1
        if self.engine.should_encode_ahead(seq.inputs):  # a large image: its tower off the engine thread
            await loop.run_in_executor(heavy_pool(self.engine.vision.heavy_nice), self.engine.encode_ahead,
                                       seq.inputs)
        self._submit(seq)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, GenerationResult):
                    return
        finally:
            seq.row.cancel.set()  # a consumer that leaves early stops its row at the next step

    def _submit(self, seq: Sequence) -> None:
        self._inbox.put(seq)
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vlserve-engine", daemon=True)
                self._thread.start()

    # -- the engine thread ------------------------------------------------------------------------
    def _run(self) -> None:
        batch = RunningBatch(self.engine)
        waiting: deque[Sequence] = deque()
        while True:
            if not batch and not waiting:
                first = self._inbox.get()
                if first is _STOP:
                    return
                waiting.append(first)
                self._gather(waiting)
            if not self._drain(waiting):
                stopped = EngineError("the engine was shut down before this request finished")
                for seq in [*batch.clear(), *waiting]:
                    seq.on_error(stopped)
                return
            forward = time.perf_counter()
            joining = self._take(waiting, batch) if self.continuous or not batch else []
            if joining:
                self.joined_running += len(joining) if batch else 0
                self._admit(batch, joining)
            try:
                with self.engine.failures():
                    if batch:
                        batch.step()
                        self.steps_run += 1
            except BaseException as err:  # the shared cache is suspect: every row learns of it
                for seq in batch.clear():
                    seq.on_error(err)
                continue
            self.largest_batch = max(self.largest_batch, len(batch))
            self.rows, self.waiting = len(batch), len(waiting)
            if self.min_step and (joining or batch):
                time.sleep(max(0.0, self.min_step - (time.perf_counter() - forward)))

    def _admit(self, batch: RunningBatch, joining: list[Sequence]) -> None:
        """Prefill ``joining`` into ``batch``. A prefill that fails leaves the running rows as they
        were, so only the newcomers are at stake; a failed group is retried one by one so that the
        request that caused the failure is the only one that gets it."""
        try:
            with self.engine.failures():
                batch.admit(joining)
            return
        except BaseException as err:
            if len(joining) == 1:
                joining[0].on_error(err)
                return
        for seq in joining:
            try:
                with self.engine.failures():
                    batch.admit([seq])
            except BaseException as err:
                seq.on_error(err)

    def _gather(self, waiting: deque[Sequence]) -> None:
        """Let requests arriving together share the first prefill: wait ``window``, and a little
        longer (up to ``max_wait``) while requests already admitted are still being prepared."""
        if self.window <= 0:
            return
        start = time.perf_counter()
        time.sleep(self.window)
        while (len(waiting) + self._inbox.qsize() < self.max_batch and self._preparing > 0
               and time.perf_counter() - start < self.max_wait):
            time.sleep(0.002)

    def _drain(self, waiting: deque[Sequence]) -> bool:
        """Move newly submitted requests to ``waiting``; False once :meth:`close` was called."""
        while True:
            try:
                seq = self._inbox.get_nowait()
            except queue.Empty:
                return True
            if seq is _STOP:
                return False
            waiting.append(seq)

    def _take(self, waiting: deque[Sequence], batch: RunningBatch) -> list[Sequence]:
        """The waiting requests that join now, in arrival order: as many as there are free rows
        and as fit the KV budget. A request too long for the budget even alone runs alone."""
        taken: list[Sequence] = []
        width, remaining = batch.width, batch.remaining
        while waiting and len(batch) + len(taken) < self.max_batch:
            seq = waiting[0]
            if seq.row.cancel.is_set():  # its caller left before it started: nothing to generate
                waiting.popleft()
                seq.row.finish = "cancelled"
                seq.on_finish(seq)
                continue
            rows = len(batch) + len(taken) + 1
            longest = max(width, len(seq.inputs.input_ids))
            most = max(remaining, seq.row.params.max_tokens)
            if rows * (longest + most) > self.max_tokens and rows > 1:
                break  # it waits for rows to finish; later arrivals do not overtake it
            taken.append(waiting.popleft())
            width, remaining = longest, most
        return taken

    def cache_stats(self) -> list[CacheStats]:
        return self.engine.cache_stats()

    def batch_stats(self) -> dict[str, int]:
        return {"rows": self.rows, "waiting": self.waiting, "steps": self.steps_run,
                "joined_running": self.joined_running}

    async def health(self) -> EngineHealth:
        health = await self.engine.health()
        health.detail.update(steps_run=self.steps_run, largest_batch=self.largest_batch,
                             joined_running=self.joined_running)
        return health

    def close(self) -> None:
        """Stop the engine thread; requests still running or waiting fail with :class:`EngineError`."""
        self._inbox.put(_STOP)
        self._prepare_pool.shutdown(wait=False, cancel_futures=True)
