"""Which requests the caches may answer, and their keys (docs/cache.md).

The response cache answers a request only when its answer is determined by what it sends:
a registered task (not an OpenAI chat, not one asking for log-probabilities) decoded greedily
(``temperature`` 0) or with a fixed ``seed``, not degraded to a fallback model, and outside
privacy mode. Its key is a SHA-256 of everything that decides the answer: the model, the task
(its prompt, schema, tools, prefill, the caller's schema and texts), the text and labels, every
option except ``stream`` and ``priority``, the sampling parameters after task defaults, the
media settings and limits, the SHA-256 of every input's bytes with its clip or page range, and
the vlserve version (a new version never serves an older one's answers). Under
``cache.scope = "key"`` the API key is part of it too.

The lookup happens after admission (authentication and rate limits in the HTTP layer, a place in
the lane), after every check of the request and after the inputs are fetched, hashed and priced
from their headers, and before anything is decoded or queued for the engine. Answers are stored
only when generation finished (never a failure, a cancelled stream, or an answer that wrote files).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from vlserve import __version__
from vlserve.cache import CachedAnswer, CacheStats, DecodedImages, MemoryStore, ResponseCache, digest
from vlserve.config import Settings

if TYPE_CHECKING:
    from vlserve.runtime.protocol import GenerationResult, SamplingParams
    from vlserve.service.call import Call

log = logging.getLogger("vlserve.cache")

#: Options that change how an answer is delivered, not what it is.
DELIVERY_OPTIONS = {"stream", "priority"}


@dataclass
class Probe:
    """One request's way through the response cache: its key once the inputs are hashed, and the
    answer found there."""

    cache: ResponseCache
    material: dict[str, Any]
    ttl: float
    key: str | None = None
    answer: CachedAnswer | None = None

    async def lookup(self, hashes: list[str]) -> bool:
        """Look the request up, its inputs' hashes now known; True on a hit."""
        try:
            self.key = digest({**self.material, "inputs": hashes})
        except (TypeError, ValueError):  # something in the request JSON cannot hold: not cached
            return False
        self.answer = await self.cache.lookup(self.key)
        return self.answer is not None


class ServiceCaches:
    """The service's caches: decoded images and (when enabled) answers. All off in privacy mode:
    a cache keeps content beyond its request, and its timing tells one caller about another's."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = settings.cache
        private = settings.privacy.enabled
        self.decoded = DecodedImages(0 if private else config.media.max_bytes)
        self.responses: ResponseCache | None = None
        if config.response.enabled and not private:
            self.responses = ResponseCache(self._store(), max_entry_bytes=config.response.max_entry_bytes)

    def _store(self) -> Any:
        response = self.settings.cache.response
        if response.backend == "redis":
            from vlserve.cache.redis import RedisStore

            return RedisStore(response.redis_url or self.settings.jobs.redis_url, prefix=response.redis_prefix,
                              timeout=response.redis_timeout)
        return MemoryStore(response.max_bytes)

    def scope(self, key_id: str | None) -> str:
        """Whose entries a request may see: its key's own (``cache.scope = "key"``) or everyone's."""
        return "" if self.settings.cache.scope == "shared" else f"key:{key_id or ''}"

    def engine_scope(self, key_id: str | None) -> str | None:
        """What the engine's media and encoder caches key this request's entries by; None in
        privacy mode (nothing is kept, even by an engine configured with caches)."""
        return None if self.settings.privacy.enabled else self.scope(key_id)

    def probe(self, call: Call, params: SamplingParams, *, key_id: str | None, model: str) -> Probe | None:
        """A :class:`Probe` when the response cache may answer this request, else None."""
        from vlserve.tasks import TASKS

        response, task = self.settings.cache.response, call.task
        if self.responses is None or task.name in response.disabled_tasks:
            return None
        registered = TASKS.get(task.name)
        if registered is None or type(registered) is not type(task) or call.other_texts or call.logprobs is not None:
            return None  # OpenAI chats and log-probabilities: not cached
        if params.temperature > 0 and params.seed is None:
            return None  # sampled without a seed: each answer is meant to differ
        if call.options.refine is not None:
            return None  # a refine job measures its own photos after the model: never answered from the cache
        ttl = response.task_ttl_seconds.get(task.name, response.ttl_seconds)
        if ttl <= 0:
            return None
        material = {
            "version": __version__,
            "model": model,
            "scope": self.scope(key_id),
            "task": [task.name, type(task).__qualname__, getattr(task, "system_prompt", ""),
                     task.default_instruction, task.schema(), task.tools(), task.prefill(), task.caller_texts()],
            "text": call.text,
            "labels": call.labels,
            "videos": [v.model_dump(exclude={"url"}) for v in call.videos],
            "documents": [d.model_dump(exclude={"url"}) for d in call.documents],
            "options": call.options.model_dump(mode="json", exclude=DELIVERY_OPTIONS),
            "params": asdict(params),
            "limits": self.settings.limits.model_dump(mode="json"),
        }
        return Probe(self.responses, material, ttl)

    async def store(self, probe: Probe, text: str, answer: Any, result: GenerationResult,
                    metadata: dict[str, Any]) -> None:
        """Keep a finished answer (one that is not JSON is not kept)."""
        if probe.key is None:
            return
        try:
            entry = CachedAnswer(text=text, answer=to_jsonable_python(answer), confidence=result.confidence,
                                 metadata=metadata)
        except (TypeError, ValueError) as err:
            log.warning("answer of task not JSON, not cached: %s", err)
            return
        await probe.cache.store_answer(probe.key, entry, probe.ttl)

    def stats(self) -> list[CacheStats]:
        return [self.decoded.stats, *([self.responses.stats] if self.responses is not None else [])]

    async def aclose(self) -> None:
        if self.responses is not None:
            await self.responses.aclose()
