"""A long-video job (``video_summary``, ``video_search``), end to end: window by window, then merged.

The request is checked, fetched, priced and moderated exactly as every other request
(:meth:`InferenceService.prepare`); then:

1. the video's duration is probed in the isolated video pool, and the whole range is planned
   into windows and sample times (:func:`vlserve.media.longvideo.plan_sampling`: 1002 beyond
   ``limits.long_video_max_seconds``);
2. for each window in order, its frames are decoded by seeking in a video worker (a hostile file
   costs its own job a 1003, nothing else), made into encoder input with absolute timestamps
   (for a lane whose engines take no decoded video, remote ones: timestamped images,
   :mod:`vlserve.media.timed_frames`), and the model is asked for the window's JSON answer
   through the ``video`` lane, with its
   admission, budgets (the window's cost) and fallback, like any request; an overloaded lane makes
   the job wait, not fail;
3. progress (``jobs.worker.report_progress``) moves after each window, so ``GET /jobs/{id}``
   shows how far the job is;
4. the task merges the windows' answers into the final one.

At most two windows' frames (the one the model reads, the next being decoded) and one window's
tensors are held at a time, whatever the video's length.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from vlserve.errors import EngineError, OverloadedError, RequestError, VideoError
from vlserve.jobs.worker import report_progress
from vlserve.media.longvideo import (
    LongVideoLimits,
    SampledWindow,
    SamplingPlan,
    Window,
    plan_sampling,
    probe_long_video_async,
    sample_window_async,
    window_features,
)
from vlserve.media.timed_frames import window_images
from vlserve.runtime.protocol import (
    GenerationRequest,
    GenerationResult,
    Usage,
    accepts_decoded_video,
    max_images,
)
from vlserve.scheduling import Cost
from vlserve.scheduling.fairness import current_client
from vlserve.schemas import InferRequest, Metadata
from vlserve.service.call import Call
from vlserve.service.inference import InferenceService, Outcome, Prepared
from vlserve.tasks.long_video import LongVideoTask, WindowAnswer

__all__ = ["is_long_video", "run_long_video"]

#: Share of the progress bar for probing and planning; the windows share the rest equally.
_PLANNED = 0.02


def is_long_video(request: InferRequest | Call) -> bool:
    """True for the tasks that run here (async jobs only) rather than through ``InferenceService.infer``."""
    return isinstance(Call.of(request).task, LongVideoTask)


async def run_long_video(service: InferenceService, request: InferRequest | Call, *, request_id: str,
                         key_id: str | None, progress: Callable[[float], None] = report_progress) -> Outcome:
    """Run one long-video request; ``progress`` gets the share done (0..1) after each step."""
    call = Call.of(request)
    task = call.task
    if not isinstance(task, LongVideoTask):
        raise RequestError(f"task {task.name!r} is not a long-video task", param="task")
    prepared = await service.prepare(call, request_id=request_id, key_id=key_id)
    video = prepared.task_input.videos[0]
    data = video.video
    if not isinstance(data, bytes):  # prepare always hands over the fetched bytes
        raise EngineError("the long-video path needs the encoded video")
    vision, limits = service.vision, LongVideoLimits.from_limits(service.settings.limits).at_most(call.options.fps)
    probe = await probe_long_video_async(data, vision, limits)
    plan = plan_sampling(probe.duration, limits, start=video.start, end=video.end)
    progress(_PLANNED)

    parts: list[WindowAnswer] = []
    results: list[GenerationResult] = []
    warnings = list(prepared.warnings)
    degraded = False
    windows = plan.windows
    # The next window is decoded (in a video worker) while the model reads this one: at most two
    # windows' frames are held at once.
    upcoming: asyncio.Future[SampledWindow] | None = asyncio.ensure_future(
        sample_window_async(data, windows[0], vision, limits))
    try:
        for window in windows:
            assert upcoming is not None
            sampled = await upcoming
            upcoming = None if window.index + 1 == len(windows) else asyncio.ensure_future(
                sample_window_async(data, windows[window.index + 1], vision, limits))
            answered, result, fell_back = await _window(service, task, prepared, plan, window, sampled, warnings,
                                                        priority=call.options.priority)
            parts.append(answered)
            if result is not None:
                results.append(result)
            degraded |= fell_back
            progress(_PLANNED + (1 - _PLANNED) * (window.index + 1) / len(windows))
    finally:
        if upcoming is not None:  # a window failed: the worker decoding the next one is stopped
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)
    if not results:
        raise VideoError("No frames could be decoded from the video.")

    answer = task.merge(parts, plan, prepared.task_input)
    usage = Usage(*(sum(getattr(r.usage, f) for r in results)
                    for f in ("input_tokens", "output_tokens", "image_tokens", "video_tokens")))
    last = results[-1]
    confidences = [r.confidence for r in results if r.confidence is not None]
    elapsed = time.perf_counter() - prepared.started
    service.metrics.latency.labels(task.lane, task.name).observe(elapsed)
    # Beyond the common fields (Metadata allows extra ones): how the video was sampled.
    sampling: dict[str, Any] = {"windows": len(plan.windows), "sampled_frames": sum(p.frames for p in parts),
                                "sampled_fps": round(plan.fps, 4)}
    metadata = Metadata(
        processing_time_ms=round(elapsed * 1000, 1),
        activated_experts=last.activated_experts,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        image_tokens=usage.image_tokens,
        video_tokens=usage.video_tokens,
        model=last.model,
        finish_reason=last.finish_reason,
        degraded=degraded,
        warnings=warnings,
        **sampling,
    )
    combined = GenerationResult(
        text="", token_ids=[], finish_reason=last.finish_reason, usage=usage,
        confidence=sum(confidences) / len(confidences) if confidences else None,
        activated_experts=last.activated_experts, model=last.model,
    )
    return Outcome(request_id, answer, combined, metadata)


async def _window(service: InferenceService, task: LongVideoTask, prepared: Prepared, plan: SamplingPlan,
                  window: Window, sampled: SampledWindow, warnings: list[str], *,
                  priority: int) -> tuple[WindowAnswer, GenerationResult | None, bool]:
    """Ask the model about one decoded window; its answer, the engine's result (None: no frames),
    and whether the lane's fallback engine answered."""
    if sampled.missing:
        warnings.append(f"{sampled.missing} of {len(window.times)} frames between {window.start:.1f} s and "
                        f"{window.end:.1f} s are past the video's real end and were left out")
    if not sampled.frames:
        return WindowAnswer(window, 0, "", []), None, False
    request_id = f"{prepared.request_id}-w{window.index}"
    lane = service.scheduler.lane(task.lane)
    if all(accepts_decoded_video(e) for e in (lane.engine, lane.fallback) if e is not None):
        features = await asyncio.to_thread(window_features, sampled, service.vision)
        generation = GenerationRequest(task.window_messages(prepared.task_input, plan, window, features),
                                       prepared.generation.params, request_id=request_id,
                                       cache_scope=prepared.generation.cache_scope)
        cost = _window_cost(sampled, features.pixel_values.nbytes, features.num_tokens)
        del features  # the generation request holds the tensors until the window is answered
    else:  # a remote engine: the frames as timestamped images, within the window's token budget
        budget = service.settings.limits.long_video_window_tokens
        limits = [n for e in (lane.engine, lane.fallback) if e is not None and (n := max_images(e)) is not None]
        images = await asyncio.to_thread(window_images, sampled, service.vision, budget, min(limits, default=None))
        generation = GenerationRequest(task.window_image_messages(prepared.task_input, plan, window, images),
                                       prepared.generation.params, request_id=request_id,
                                       cache_scope=prepared.generation.cache_scope)
        cost = _window_cost(sampled, sum(i.image.width * i.image.height * 3 for i in images),
                            sum(i.tokens for i in images))
        del images
    result, fell_back = await _generate(service, task.lane, generation, priority, cost,
                                        client=current_client(prepared.key_id))
    service.moderator.check(result.text, stage="output", request_id=prepared.request_id, key_id=prepared.key_id,
                            input_hashes=prepared.input_hashes)
    try:
        return task.window_answer(result.text, window, len(sampled.frames)), result, fell_back
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise EngineError(f"the model's answer for window {window.index} could not be read: {err}") from err


def _window_cost(sampled: SampledWindow, tensor_bytes: int, tokens: int) -> Cost:
    """What one window holds while it runs: its resized frames and its encoder input."""
    return Cost(sum(f.nbytes for f in sampled.frames) + tensor_bytes, tokens)


async def _generate(service: InferenceService, lane: Any, generation: GenerationRequest, priority: int,
                    cost: Cost, *, client: str) -> tuple[GenerationResult, bool]:
    """One window through the lane (admission, budget, a running slot), counted against the job
    owner's fair share like any request of theirs; waits while the lane is full. Returns the result
    and whether it ran on the lane's fallback engine."""
    while True:
        try:
            ticket = service.scheduler.lane(lane).admit(priority, client=client)
        except OverloadedError as err:
            await asyncio.sleep(min(err.retry_after, 5.0))
            continue
        result: GenerationResult | None = None
        try:
            await ticket.reserve(cost)
            async for event in ticket.stream(generation):
                if isinstance(event, GenerationResult):
                    result = event
        except OverloadedError as err:  # waited past the lane's queue timeout: a job keeps waiting
            ticket.release()
            await asyncio.sleep(min(err.retry_after, 5.0))
            continue
        except BaseException:
            ticket.release()
            raise
        if result is None:
            raise EngineError("the engine ended a window's answer without a result")
        return result, ticket.decision == "degrade"
