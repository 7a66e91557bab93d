"""One task request, end to end, without HTTP: inputs → task prompt → engine → answer.

The HTTP routes, async jobs and the CLI all call :class:`InferenceService`; it raises only
:mod:`vlserve.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from vlserve.cache import CacheCollector, CachedAnswer, CacheOwner, CacheStats
from vlserve.config import Settings
from vlserve.errors import EngineError, OverloadedError, RequestError, TooManyInputsError, VlserveError
from vlserve.inputs import FetchBudget, Fetcher, FetchPolicy, load_source, render_pdf_isolated
from vlserve.media import VisionSettings, load_image_async
from vlserve.redact import withhold_content
from vlserve.runtime.protocol import (
    Engine,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    TextDelta,
    Usage,
    VideoPart,
)
from vlserve.runtime.schema_limits import check_schema
from vlserve.sampling import check_sampling
from vlserve.scheduling import Cost, Scheduler, Ticket
from vlserve.scheduling.fairness import current_client
from vlserve.schemas import InferRequest, InferResult, Metadata, RefineOption
from vlserve.service import artifact_store, privacy
from vlserve.service.caching import Probe, ServiceCaches
from vlserve.service.call import Call
from vlserve.service.costs import price
from vlserve.service.moderation import Moderator
from vlserve.service.refine import check_refine
from vlserve.tasks import Task, TaskInput

SAMPLING_FIELDS = ("max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "seed",
                   "stop")


@dataclass
class Prepared:
    """A request whose inputs are fetched, decoded and checked, ready for the engine."""

    request_id: str
    key_id: str | None
    task: Task
    task_input: TaskInput
    generation: GenerationRequest
    input_hashes: list[str]
    started: float
    warnings: list[str] = field(default_factory=list)
    refine: RefineOption | None = None  # multiview_3d as a job: fit the spec to the photos afterwards
    photos: list[bytes] = field(default_factory=list)  # the images as sent (scrubbed), kept for refine only
    probe: Probe | None = None  # the response cache's view of it (answer set: answered from the cache)
    made_files: bool = False  # the task wrote files (an answer naming them is never cached)


@dataclass
class Outcome:
    request_id: str
    answer: Any
    result: GenerationResult
    metadata: Metadata
    prepared: Prepared | None = None  # the inputs it answered (a job's refine step reads them)

    def result_model(self) -> InferResult:
        return InferResult(answer=self.answer, confidence=self.result.confidence, metadata=self.metadata)

    @property
    def code(self) -> int:
        return OverloadedError.code if self.metadata.degraded else 0

    @property
    def msg(self) -> str:
        if self.metadata.degraded:
            return f"model overloaded: answered by the lighter model {self.metadata.model} (degraded)"
        return "success"


@dataclass
class Run:
    """An admitted request: its place in a lane and, once prepared, its inputs."""

    ticket: Ticket
    prepared: Prepared


def vision_settings(settings: Settings) -> VisionSettings:
    """The media limits of ``settings`` (the one source: ``config.Limits``)."""
    return VisionSettings.from_limits(settings.limits)


def fetch_policy(settings: Settings) -> FetchPolicy:
    f = settings.fetching
    return FetchPolicy(
        allow_hosts=tuple(f.allow_hosts),
        deny_hosts=tuple(f.deny_hosts),
        max_bytes=settings.limits.max_input_bytes,
        connect_timeout=f.connect_timeout,
        total_timeout=f.total_timeout,
        max_redirects=f.max_redirects,
        read_timeout=f.read_timeout,
        min_bytes_per_second=f.min_bytes_per_second,
        max_per_host=f.max_per_host,
    )


class InferenceService:
    def __init__(self, settings: Settings, scheduler: Scheduler, fetcher: Fetcher | None = None) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.metrics = scheduler.metrics
        self.engine: Engine = scheduler.engines["main"]
        self.fetcher = fetcher or Fetcher(fetch_policy(settings))
        self.vision = vision_settings(settings)
        self.moderator = Moderator(settings.moderation, hashes=not settings.privacy.enabled)
        self.caches = ServiceCaches(settings)  # response and decoded-image caches (service/caching.py)
        self._watch_caches()
        if settings.privacy.enabled:
            withhold_content()  # log lines quote no request or answer text (vlserve.redact)

    async def aclose(self) -> None:
        self.scheduler.close()
        await self.caches.aclose()
        await self.fetcher.aclose()

    # -- preparation -----------------------------------------------------------------------
    async def prepare(self, request: InferRequest | Call, *, request_id: str, key_id: str | None,
                      ticket: Ticket | None = None) -> Prepared:
        """Check, fetch and decode everything; every failure is a typed, coded error. Counts, text
        and options are checked before anything is fetched; the media's cost, read from headers,
        is reserved on ``ticket`` before anything is decoded."""
        started = time.perf_counter()
        call = Call.of(request)
        # The task for this request: a caller's schema, an agent's history... bounded here, before any fetch.
        task = call.task = call.task.configure(call.options, self.settings)
        self._check_counts(call)
        refine = check_refine(call, self.settings)  # /infer: 4000, submit a job instead
        task.rules.check(images=len(call.images), videos=len(call.videos),
                         documents=len(call.documents), text=call.text)
        params = self._params(call)
        # After every check, before anything is decoded or queued: may the response cache answer it?
        # (Only requests admitted to run on their lane's own engine: start() -> events().)
        probe = None if ticket is None or ticket.decision != "run" else self.caches.probe(
            call, params, key_id=key_id, model=ticket.engine.model_name)
        photos: list[bytes] | None = [] if refine is not None else None
        inp, hashes, warnings = await self._load_inputs(call, ticket, photos, probe=probe,
                                                        scope=self.caches.scope(key_id))
        cached = probe is not None and probe.answer is not None
        inp.artifacts_dir = self.settings.recon3d.artifacts_dir / request_id
        inp.artifacts_url = f"/artifacts/{request_id}/"
        inp.recon3d, inp.formats = self.settings.recon3d, call.options.formats
        warnings += [] if cached else task.prepare(inp)
        self.moderator.check("\n".join(t for t in call.all_text if t), stage="input", request_id=request_id,
                             key_id=key_id, input_hashes=hashes)
        generation = GenerationRequest([] if cached else task.messages(inp), params, request_id=request_id,
                                       tools=task.tools(), prefill=task.prefill(),
                                       cache_scope=self.caches.engine_scope(key_id))
        return Prepared(request_id, key_id, task, inp, generation, hashes, started, warnings, refine, photos or [],
                        probe=probe)

    def _check_counts(self, call: Call) -> None:
        """Inputs and text within the server's limits (1006, 4000), before any fetch or decode."""
        lim = self.settings.limits
        for kind, count, limit in (("images", len(call.images), lim.max_images),
                                   ("videos", len(call.videos), lim.max_videos),
                                   ("documents", len(call.documents), lim.max_documents),
                                   ("labels", len(call.labels), lim.max_images)):
            if count > limit:
                raise TooManyInputsError(f"at most {limit} {kind} per request (server limit), got {count}")
        if len(call.task.tools()) > lim.max_tools:
            raise RequestError(f"at most {lim.max_tools} tools per request (server limit), got "
                               f"{len(call.task.tools())}", param="tools")
        for text in [*call.all_text, *call.options.stop, *call.images, *(v.url for v in call.videos),
                     *(d.url for d in call.documents)]:
            if not _is_utf8(text):  # JSON allows lone UTF-16 surrogates ("\ud800"); nothing after us does
                raise RequestError("the request's text contains an unpaired UTF-16 surrogate; send valid Unicode")
        chars = sum(len(t) for t in call.all_text)
        if chars > lim.max_text_chars:
            raise RequestError(f"the request's text (instructions, messages, system prompts, labels) has {chars} "
                               f"characters; this server accepts at most {lim.max_text_chars}")

    def _params(self, call: Call) -> SamplingParams:
        lim = self.settings.limits
        given = {k: v for k, v in call.options.model_dump().items() if k in SAMPLING_FIELDS and v not in (None, [])}
        merged = {**call.task.defaults, **given}
        merged.setdefault("max_tokens", lim.default_max_tokens)
        if merged["max_tokens"] > lim.max_tokens:
            raise RequestError(f"max_tokens may be at most {lim.max_tokens} on this server")
        check_sampling(merged, max_stop=lim.max_stop_strings, max_stop_chars=lim.max_stop_chars)
        schema = call.task.schema()
        if schema is not None and call.task.caller_schema:  # the caller's own: bounded like any input
            check_schema(schema, max_bytes=lim.max_schema_bytes, max_depth=lim.max_schema_depth,
                         max_tokens=merged["max_tokens"])
        return SamplingParams(**merged, json_schema=schema, logprobs=call.logprobs)

    async def _load_inputs(self, call: Call, ticket: Ticket | None,
                           photos: list[bytes] | None = None, *, probe: Probe | None = None,
                           scope: str = "") -> tuple[TaskInput, list[str], list[str]]:
        """Fetch, price from the headers, reserve the price (``ticket``), then decode; ``photos``,
        if given, receives the images' bytes (after privacy mode's scrubbing)."""
        lim, fetching = self.settings.limits, self.settings.fetching
        budget = FetchBudget(fetching.max_fetches_per_request, fetching.max_bytes_per_request)
        refs = [*call.images, *[v.url for v in call.videos], *[d.url for d in call.documents]]
        privacy.refuse_urls(self.settings, refs)  # privacy mode: nothing is fetched (1008)
        urls = sum(ref.lstrip()[:8].lower().startswith(("http://", "https://")) for ref in refs)
        if ticket is not None and urls:  # what the downloads may hold, until their real cost is known
            await ticket.reserve(Cost(min(urls * lim.max_input_bytes, fetching.max_bytes_per_request)))
        sources = await asyncio.gather(*(
            load_source(ref, fetcher=self.fetcher, local_root=fetching.local_root, max_bytes=lim.max_input_bytes,
                        budget=budget) for ref in refs
        ))
        hashes = [hashlib.sha256(s.data).hexdigest() for s in sources]
        n_img, n_vid = len(call.images), len(call.videos)
        image_sources, video_sources = sources[:n_img], sources[n_img : n_img + n_vid]
        documents = list(zip(call.documents, sources[n_img + n_vid :], strict=True))
        priced = await price(image_sources, list(zip(call.videos, video_sources, strict=True)), documents,
                             vision=self.vision, limits=lim, fps=call.options.fps)
        if ticket is not None:
            await ticket.reserve(priced.cost)
        if probe is not None and await probe.lookup(hashes):  # answered from the response cache: nothing to decode
            return TaskInput(text=call.text, labels=call.labels), hashes, []
        image_sources = await privacy.scrub_images(self.settings, image_sources)  # headers passed the limits
        if photos is not None:
            photos.extend(s.data for s in image_sources)
        images = await asyncio.gather(*(  # a repeated image is decoded once (cache.media, cache/media.py)
            self.caches.decoded.load(s.data, sha, self.vision, scope=scope, decode=load_image_async)
            for s, sha in zip(image_sources, hashes, strict=False)))
        videos = [VideoPart(source.data, fps=call.options.fps, start=spec.start, end=spec.end)
                  for spec, source in zip(call.videos, video_sources, strict=True)]
        rendered = await asyncio.gather(*(
            render_pdf_isolated(source.data, dpi=lim.pdf_dpi, max_pages=lim.max_pdf_pages, policy=lim.pdf_policy,
                                first_page=spec.first_page, last_page=spec.last_page,
                                max_page_pixels=lim.pdf_max_page_pixels,
                                max_document_pixels=lim.pdf_max_document_pixels)
            for spec, source in documents))
        pages, warnings = [], []
        for number, doc in enumerate(rendered, 1):
            pages.extend(doc.pages)
            if doc.truncated:
                warnings.append(f"document {number} has {doc.page_count} pages: only the first "
                                f"{len(doc.pages)} were analysed")
        inp = TaskInput(text=call.text, images=list(images), videos=videos, pages=pages, labels=call.labels)
        return inp, hashes, warnings

    # -- running ---------------------------------------------------------------------------
    async def finish(self, prepared: Prepared, result: GenerationResult, *, degraded: bool = False) -> Outcome:
        self.moderator.check(result.text, stage="output", request_id=prepared.request_id,
                             key_id=prepared.key_id, input_hashes=prepared.input_hashes)
        try:
            # Post-processing can be heavy (3D compilation and export): keep it off the event loop.
            task, text, inp = prepared.task, result.text, prepared.task_input
            answer = task.answer(text, inp) if task.light_answer else await asyncio.to_thread(task.answer, text, inp)
        except VlserveError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise EngineError(f"the model's answer could not be read as the task's output: {err}") from err
        finally:  # privacy mode: the files go after privacy.artifact_seconds, a failed build's too
            privacy.expire_artifacts(self.settings, prepared.task_input.artifacts_dir)
        # Files the task wrote (3D models) belong to the key that asked (service/artifacts.py); with
        # artifacts.store = "s3" they move to the bucket before the answer names them (artifact_store.py).
        prepared.made_files = await artifact_store.keep(self.settings, prepared.task_input.artifacts_dir,
                                                        prepared.key_id)
        metadata = Metadata(
            processing_time_ms=round((time.perf_counter() - prepared.started) * 1000, 1),
            activated_experts=result.activated_experts,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            image_tokens=result.usage.image_tokens,
            video_tokens=result.usage.video_tokens,
            model=result.model,
            finish_reason=result.finish_reason,
            degraded=degraded,
            warnings=[*prepared.warnings, *result.warnings],
            ttft_ms=round(result.timings.get("ttft_ms", 0.0), 1),
        )
        return Outcome(prepared.request_id, answer, result, metadata, prepared)

    async def start(self, request: InferRequest | Call, *, request_id: str, key_id: str | None) -> Run:
        """Admit the request to its lane (before touching any media), then prepare it."""
        call = Call.of(request)
        if getattr(call.task, "jobs_only", False):  # long videos: many model calls, minutes of work
            raise RequestError(f"task {call.task.name!r} runs only as an async job: send the same body to "
                               "POST /jobs and follow GET /jobs/{id} (progress, then the result)", param="task")
        ticket = self.scheduler.lane(call.task.lane).admit(call.options.priority, client=current_client(key_id))
        try:
            prepared = await self.prepare(call, request_id=request_id, key_id=key_id, ticket=ticket)
        except BaseException:
            ticket.release()
            raise
        return Run(ticket, prepared)

    async def events(self, run: Run) -> AsyncGenerator[TextDelta | Outcome, None]:
        """Wait for a slot, then text deltas and the :class:`Outcome`; output is moderated as it grows."""
        prepared, ticket = run.prepared, run.ticket
        lane = ticket.lane.name
        if prepared.probe is not None and prepared.probe.answer is not None:
            ticket.release()  # answered from the response cache: nothing to queue for the engine
            for item in self._cached_events(lane, prepared, prepared.probe.answer):
                yield item
            return
        text = ""
        events = ticket.stream(prepared.generation)
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    if not text:
                        self.metrics.ttft.labels(lane).observe(time.perf_counter() - prepared.started)
                    text += event.text
                    self.moderator.check(text, stage="output", request_id=prepared.request_id,
                                         key_id=prepared.key_id, input_hashes=prepared.input_hashes)
                    yield event
                else:
                    outcome = await self.finish(prepared, event, degraded=ticket.decision == "degrade")
                    self._observe(lane, prepared, event)
                    await self._remember(prepared, outcome)
                    yield outcome
        finally:
            await events.aclose()

    async def _remember(self, prepared: Prepared, outcome: Outcome) -> None:
        """Store a finished answer in the response cache (stored before it is sent, so that the
        caller's next identical request finds it)."""
        probe, result = prepared.probe, outcome.result
        artifacts = prepared.task_input.artifacts_dir
        if probe is None or outcome.metadata.degraded or result.finish_reason == "cancelled":
            return
        if prepared.made_files or (artifacts is not None and artifacts.exists()):  # it names this request's files
            return
        metadata = outcome.metadata.model_dump(mode="json", exclude={"processing_time_ms", "ttft_ms", "cached"})
        await self.caches.store(probe, result.text, outcome.answer, result, metadata)

    def _cached_events(self, lane: str, prepared: Prepared, cached: CachedAnswer) -> list[TextDelta | Outcome]:
        """A cached answer as a stream: the whole text as one delta, then the outcome."""
        self.moderator.check(cached.text, stage="output", request_id=prepared.request_id,  # today's policy
                             key_id=prepared.key_id, input_hashes=prepared.input_hashes)
        elapsed = time.perf_counter() - prepared.started
        self.metrics.ttft.labels(lane).observe(elapsed)
        meta = {**cached.metadata, "processing_time_ms": round(elapsed * 1000, 1), "ttft_ms": round(elapsed * 1000, 1),
                "cached": True}
        metadata = Metadata.model_validate(meta)
        usage = Usage(input_tokens=metadata.input_tokens, output_tokens=metadata.output_tokens,
                      image_tokens=metadata.image_tokens, video_tokens=metadata.video_tokens)
        result = GenerationResult(text=cached.text, token_ids=[], finish_reason=metadata.finish_reason,  # type: ignore[arg-type]
                                  usage=usage, confidence=cached.confidence, model=metadata.model)
        self.metrics.latency.labels(lane, prepared.task.name).observe(elapsed)
        return [TextDelta(cached.text, 0), Outcome(prepared.request_id, cached.answer, result, metadata, prepared)]

    def _watch_caches(self) -> None:
        """Every cache on ``/metrics``: the service's own and those of engines that keep some."""
        engines = self.scheduler.engines

        def sources() -> list[tuple[str, CacheStats]]:
            found = [("", stats) for stats in self.caches.stats()]
            for name, engine in engines.items():
                if isinstance(engine, CacheOwner):
                    found += [(name, stats) for stats in engine.cache_stats()]
            return found

        with contextlib.suppress(ValueError):  # a second service on the same registry (tests): the first reports
            self.metrics.registry.register(CacheCollector(sources))

    def _observe(self, lane: str, prepared: Prepared, result: GenerationResult) -> None:
        self.metrics.latency.labels(lane, prepared.task.name).observe(time.perf_counter() - prepared.started)
        self.metrics.tokens.labels(lane, "input").observe(result.usage.input_tokens)
        self.metrics.tokens.labels(lane, "output").observe(result.usage.output_tokens)

    async def infer(self, request: InferRequest | Call, *, request_id: str, key_id: str | None) -> Outcome:
        run = await self.start(request, request_id=request_id, key_id=key_id)
        run.prepared.generation.incremental = False  # only the outcome is read: no token stream needed
        outcome = None
        async for event in self.events(run):
            if isinstance(event, Outcome):
                outcome = event
        assert outcome is not None
        return outcome


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
