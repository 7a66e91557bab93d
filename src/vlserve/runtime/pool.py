"""A pool of replicas of one model behind remote engines, itself an :class:`Engine`.

- **Routing**: each request goes to the healthy replica with the fewest requests outstanding
  (ties: the shorter upstream queue).
- **Per-upstream limits**: a replica takes at most ``max_concurrency`` requests at once, and none
  while its own queue (read from its Prometheus ``/metrics``: ``vllm:num_requests_waiting``,
  ``sglang:num_queue_reqs``, ``vlserve_queue_depth``) holds ``max_queue`` or more. When no
  replica can take a request, it is refused at once with 2001 (:class:`OverloadedError`): the lane
  answers "overloaded, retry" instead of piling requests into an upstream queue that explodes.
- **Ejection**: ``eject_after`` consecutive failures (5xx, broken streams, timeouts) take a
  replica out, a refused connection at once; a background probe every ``probe_interval`` seconds
  re-admits it when its health endpoint answers 200, and refreshes every replica's queue depth.
- **Retry**: a request that fails before its first token is retried on another replica; after
  the first token the error reaches the caller (it has seen part of an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from vlserve import errors as e
from vlserve.config import Upstream
from vlserve.media import VisionSettings
from vlserve.redact import content
from vlserve.runtime.protocol import (
    EngineHealth,
    GenerationRequest,
    GenerationResult,
    StreamEvent,
    TextDelta,
    accepts_decoded_video,
)
from vlserve.runtime.remote import RemoteEngine, encode_request

log = logging.getLogger("vlserve.pool")


@dataclass(eq=False)
class Replica:
    engine: RemoteEngine
    outstanding: int = 0
    failures: int = 0
    healthy: bool = True
    waiting: float = 0.0  # the upstream's own queue depth at the last probe

    def free(self, options: Upstream) -> bool:
        return (self.outstanding < options.max_concurrency
                and (options.max_queue == 0 or self.waiting < options.max_queue))


class EnginePool:
    """Replicas of one model (``options.upstreams``), routed, limited and probed as above."""

    def __init__(self, options: Upstream, vision: VisionSettings, *, name: str,
                 engines: list[RemoteEngine] | None = None) -> None:
        if not options.upstreams and not engines:
            raise ValueError("an engine pool needs at least one upstream")
        self.model_name = name
        self.options = options
        self.vision = vision
        self.replicas = [Replica(x) for x in engines or [RemoteEngine(url, options, vision, name=name)
                                                         for url in options.upstreams]]
        self._prober: asyncio.Task[None] | None = None
        self.accepts_decoded_video = all(accepts_decoded_video(r.engine) for r in self.replicas)
        self.max_images = options.max_images

    # -- the engine protocol --------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        result = None
        async for event in self.stream(request):
            if isinstance(event, GenerationResult):
                result = event
        assert result is not None
        return result

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamEvent, None]:
        self._start_probing()
        outgoing = await encode_request(request, self.options, self.vision)  # once, whichever replica answers
        tried: set[Replica] = set()
        while True:
            replica = self._pick(tried)
            tried.add(replica)
            replica.outstanding += 1
            started = False
            try:
                # Closed explicitly, so that a caller going away closes the upstream connection now.
                async with contextlib.aclosing(replica.engine.send(outgoing)) as events:
                    async for event in events:
                        started = started or isinstance(event, TextDelta)
                        yield event
                replica.failures = 0
                return
            except (e.UpstreamError, e.OverloadedError) as err:
                if not isinstance(err, e.OverloadedError):
                    self._failed(replica, err)
                if started or not self._others(tried):
                    raise
                log.info("retrying %s on another replica after: %s", request.request_id, content(err.message))
            finally:
                replica.outstanding -= 1

    def accepting(self) -> bool:
        """Whether a request would be sent now: some replica is healthy and under its limits. Lanes
        ask before admitting, so that a lane with a fallback degrades instead of failing."""
        return any(r.healthy and r.free(self.options) for r in self.replicas)

    async def health(self) -> EngineHealth:
        self._start_probing()
        healthy = sum(r.healthy for r in self.replicas)
        return EngineHealth(ready=healthy > 0, model=self.model_name,
                            detail={"replicas": len(self.replicas), "healthy_replicas": healthy})

    def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            self._prober = None
        for replica in self.replicas:
            replica.engine.close()

    # -- what the tests and /metrics read -------------------------------------------------
    def batch_stats(self) -> dict[str, int]:
        return {"rows": sum(r.outstanding for r in self.replicas),
                "waiting": int(sum(r.waiting for r in self.replicas)), "steps": 0, "joined_running": 0}

    async def probe(self) -> None:
        """One round of health and queue-depth probes of every replica (concurrently)."""
        await asyncio.gather(*(self._probe(r) for r in self.replicas))

    # -- internals ------------------------------------------------------------------------
    def _pick(self, tried: set[Replica]) -> Replica:
        candidates = [r for r in self.replicas if r.healthy and r not in tried]
        if not candidates:
            raise e.UpstreamUnavailableError(f"no replica of the model {self.model_name} is reachable now")
        free = [r for r in candidates if r.free(self.options)]
        if not free:
            raise e.OverloadedError(f"the model {self.model_name} is at capacity on all its upstream servers",
                                    retry_after=max(1.0, self.options.probe_interval))
        return min(free, key=lambda r: (r.outstanding, r.waiting))

    def _others(self, tried: set[Replica]) -> bool:
        return any(r.healthy and r not in tried for r in self.replicas)

    def _failed(self, replica: Replica, err: e.VlserveError) -> None:
        replica.failures += 1
        if replica.healthy and (replica.failures >= self.options.eject_after
                                or isinstance(err, e.UpstreamUnavailableError)):
            replica.healthy = False
            log.warning("replica %s of %s taken out after %d failure(s): %s", replica.engine.url,
                        self.model_name, replica.failures, err.message)

    async def _probe(self, replica: Replica) -> None:
        health = await replica.engine.health()
        if health.ready and not replica.healthy:
            log.info("replica %s of %s re-admitted", replica.engine.url, self.model_name)
            replica.healthy, replica.failures = True, 0
        elif not health.ready and replica.healthy:
            replica.healthy = False
            log.warning("replica %s of %s failed its health probe", replica.engine.url, self.model_name)
        if health.ready and self.options.max_queue:
            waiting = await replica.engine.queue_depth()
            replica.waiting = waiting if waiting is not None else 0.0

    def _start_probing(self) -> None:
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_forever())

    async def _probe_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a probe never stops probing; failures show as unhealthy
                await self.probe()
            await asyncio.sleep(self.options.probe_interval)
