"""One task request, end to end, without HTTP: inputs → task prompt → engine → answer.

The HTTP routes, async jobs and the CLI all call :class:`InferenceService`; it raises only
:mod:`vlserve.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from vlserve.config import Settings
from vlserve.errors import EngineError, OverloadedError, RequestError, TooManyInputsError, VlserveError
from vlserve.inputs import Fetcher, FetchPolicy, load_source, render_pdf
from vlserve.media import VisionSettings, load_image
from vlserve.runtime.protocol import (
    Engine,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    TextDelta,
    VideoPart,
)
from vlserve.scheduling import Scheduler, Ticket
from vlserve.schemas import DocumentInput, InferRequest, InferResult, Metadata, VideoInput
from vlserve.service.artifacts import record_owner
from vlserve.service.moderation import Moderator
from vlserve.tasks import Task, TaskInput, get_task

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


@dataclass
class Outcome:
    request_id: str
    answer: Any
    result: GenerationResult
    metadata: Metadata

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
    )


class InferenceService:
    def __init__(self, settings: Settings, scheduler: Scheduler, fetcher: Fetcher | None = None) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.metrics = scheduler.metrics
        self.engine: Engine = scheduler.engines["main"]
        self.fetcher = fetcher or Fetcher(fetch_policy(settings))
        self.vision = vision_settings(settings)
        self.moderator = Moderator(settings.moderation)

    async def aclose(self) -> None:
        self.scheduler.close()
        await self.fetcher.aclose()

    # -- preparation -----------------------------------------------------------------------
    async def prepare(self, request: InferRequest, *, request_id: str, key_id: str | None) -> Prepared:
        """Check, fetch and decode everything; every failure is a typed, coded error."""
        started = time.perf_counter()
        lim = self.settings.limits
        task = get_task(request.task)
        for kind, items, limit in (("images", request.images, lim.max_images),
                                   ("videos", request.videos, lim.max_videos),
                                   ("documents", request.documents, lim.max_documents)):
            if len(items) > limit:
                raise TooManyInputsError(f"at most {limit} {kind} per request (server limit), got {len(items)}")
        if len(request.text) > lim.max_text_chars:
            raise RequestError(f"text is longer than {lim.max_text_chars} characters")
        task.rules.check(images=len(request.images), videos=len(request.videos),
                         documents=len(request.documents), text=request.text)
        inp, hashes, warnings = await self._load_inputs(request)
        inp.artifacts_dir = self.settings.recon3d.artifacts_dir / request_id
        inp.artifacts_url = f"/artifacts/{request_id}/"
        warnings += task.prepare(inp)
        self.moderator.check(request.text, stage="input", request_id=request_id, key_id=key_id,
                             input_hashes=hashes)
        params = self._params(task, request)
        generation = GenerationRequest(task.messages(inp), params, request_id=request_id)
        return Prepared(request_id, key_id, task, inp, generation, hashes, started, warnings)

    def _params(self, task: Task, request: InferRequest) -> SamplingParams:
        given = {k: v for k, v in request.options.model_dump().items() if k in SAMPLING_FIELDS and v not in (None, [])}
        merged = {**task.defaults, **given}
        merged.setdefault("max_tokens", self.settings.limits.default_max_tokens)
        if merged["max_tokens"] > self.settings.limits.max_tokens:
            raise RequestError(f"max_tokens may be at most {self.settings.limits.max_tokens} on this server")
        return SamplingParams(**merged, json_schema=task.schema())

    async def _load_inputs(self, request: InferRequest) -> tuple[TaskInput, list[str], list[str]]:
        lim = self.settings.limits
        refs = [*request.images, *[v.url if isinstance(v, VideoInput) else v for v in request.videos],
                *[d.url if isinstance(d, DocumentInput) else d for d in request.documents]]
        sources = await asyncio.gather(*(
            load_source(ref, fetcher=self.fetcher, local_root=self.settings.fetching.local_root,
                        max_bytes=lim.max_input_bytes) for ref in refs
        ))
        hashes = [hashlib.sha256(s.data).hexdigest() for s in sources]
        n_img, n_vid = len(request.images), len(request.videos)
        images = await asyncio.gather(*(
            asyncio.to_thread(load_image, s.data, self.vision) for s in sources[:n_img]
        ))
        videos = []
        for spec, source in zip(request.videos, sources[n_img : n_img + n_vid], strict=True):
            start = spec.start if isinstance(spec, VideoInput) else None
            end = spec.end if isinstance(spec, VideoInput) else None
            videos.append(VideoPart(source.data, fps=request.options.fps, start=start, end=end))
        pages, warnings = [], []
        for number, (spec, source) in enumerate(zip(request.documents, sources[n_img + n_vid :], strict=True), 1):
            chosen = spec if isinstance(spec, DocumentInput) else DocumentInput(url="")
            doc = await asyncio.to_thread(render_pdf, source.data, dpi=lim.pdf_dpi, max_pages=lim.max_pdf_pages,
                                          policy=lim.pdf_policy, first_page=chosen.first_page,
                                          last_page=chosen.last_page)
            pages.extend(doc.pages)
            if doc.truncated:
                warnings.append(f"document {number} has {doc.page_count} pages: only the first "
                                f"{len(doc.pages)} were analysed")
        inp = TaskInput(text=request.text, images=list(images), videos=videos, pages=pages, labels=request.labels)
        return inp, hashes, warnings

    # -- running ---------------------------------------------------------------------------
    async def finish(self, prepared: Prepared, result: GenerationResult, *, degraded: bool = False) -> Outcome:
        self.moderator.check(result.text, stage="output", request_id=prepared.request_id,
                             key_id=prepared.key_id, input_hashes=prepared.input_hashes)
        try:
            # Post-processing can be heavy (3D compilation and export): keep it off the event loop.
            answer = await asyncio.to_thread(prepared.task.answer, result.text, prepared.task_input)
        except VlserveError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise EngineError(f"the model's answer could not be read as the task's output: {err}") from err
        # Files the task wrote (3D models) belong to the key that asked: see service/artifacts.py.
        record_owner(prepared.task_input.artifacts_dir, prepared.key_id)
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
        return Outcome(prepared.request_id, answer, result, metadata)

    async def start(self, request: InferRequest, *, request_id: str, key_id: str | None) -> Run:
        """Admit the request to its lane (before touching any media), then prepare it."""
        task = get_task(request.task)
        ticket = self.scheduler.lane(task.lane).admit(request.options.priority)
        try:
            prepared = await self.prepare(request, request_id=request_id, key_id=key_id)
        except BaseException:
            ticket.release()
            raise
        return Run(ticket, prepared)

    async def events(self, run: Run) -> AsyncIterator[TextDelta | Outcome]:
        """Wait for a slot, then text deltas and the :class:`Outcome`; output is moderated as it grows."""
        prepared, ticket = run.prepared, run.ticket
        lane = ticket.lane.name
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
                    yield outcome
        finally:
            await events.aclose()

    def _observe(self, lane: str, prepared: Prepared, result: GenerationResult) -> None:
        self.metrics.latency.labels(lane, prepared.task.name).observe(time.perf_counter() - prepared.started)
        self.metrics.tokens.labels(lane, "input").observe(result.usage.input_tokens)
        self.metrics.tokens.labels(lane, "output").observe(result.usage.output_tokens)

    async def infer(self, request: InferRequest, *, request_id: str, key_id: str | None) -> Outcome:
        run = await self.start(request, request_id=request_id, key_id=key_id)
        outcome = None
        async for event in self.events(run):
            if isinstance(event, Outcome):
                outcome = event
        assert outcome is not None
        return outcome
