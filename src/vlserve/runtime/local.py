"""The embedded engine: Qwen3-VL through ``transformers`` on CPU or GPU.

Requests are prepared (media decoded and patchified, prompt rendered and tokenized) and then
generated together in one left-padded ``model.generate`` call; :mod:`vlserve.runtime.decoding`
keeps each request's settings, stream and stop conditions separate inside the batch.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import torch

from vlserve.errors import EngineError, RequestError, VlserveError
from vlserve.media import ImageFeatures, VideoFeatures, VisionSettings, load_video, preprocess_image
from vlserve.runtime.constrained import GrammarCompiler
from vlserve.runtime.decoding import BatchDecoder, RowState, StopAdapter
from vlserve.runtime.experts import ExpertTracker
from vlserve.runtime.loading import Checkpoint, DType, load_model, resolve_checkpoint
from vlserve.runtime.prompt import ModelInputs, build_inputs
from vlserve.runtime.protocol import (
    EngineHealth,
    GenerationRequest,
    GenerationResult,
    ImagePart,
    StreamEvent,
    TextDelta,
    Usage,
    VideoPart,
)

_DONE = object()


class LocalEngine:
    """Serve one Qwen3-VL checkpoint in-process.

    ``model`` is ``tiny``/``tiny-moe``, a checkpoint directory, or a hub id (see
    :func:`vlserve.runtime.loading.resolve_checkpoint`).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = "tiny",
        *,
        device: str = "auto",
        dtype: DType = "auto",
        vision: VisionSettings | None = None,
        name: str | None = None,
    ) -> None:
        self.checkpoint: Checkpoint = resolve_checkpoint(model)
        self.model, self.tokenizer, self.device = load_model(self.checkpoint, device=device, dtype=dtype)
        self.model_name = name or self.checkpoint.name
        self.vision = vision or VisionSettings.from_checkpoint(self.checkpoint.path)
        config = self.model.config
        self.image_token_id: int = config.image_token_id
        self.video_token_id: int = config.video_token_id
        self.vocab_size: int = config.get_text_config().vocab_size
        self.eos_token_ids = self._eos_ids()
        self.pad_token_id: int = self.tokenizer.pad_token_id or self.eos_token_ids[-1]
        self.experts = ExpertTracker(self.model)
        self._grammar: GrammarCompiler | None = None
        self._lock = threading.Lock()

    def with_vision(self, vision: VisionSettings) -> LocalEngine:
        """The same loaded model with other media settings (shares weights, lock and grammar tables)."""
        twin = copy.copy(self)
        twin.vision = vision
        return twin

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.insert(0, self.tokenizer.eos_token_id)
        return ids

    @property
    def grammar(self) -> GrammarCompiler:
        if self._grammar is None:  # built lazily: it walks the whole vocabulary once (~1 s)
            self._grammar = GrammarCompiler(self.tokenizer, self.vocab_size, self.eos_token_ids)
        return self._grammar

    # -- preparation (CPU work, safe to run in worker threads) ----------------------------
    def prepare(self, request: GenerationRequest) -> ModelInputs:
        """Check the settings, decode and patchify media, render the chat template and tokenize.

        Everything a request can get wrong is found here, so a bad request never fails a batch.
        """
        if request.params.max_tokens < 1:
            raise RequestError("max_tokens must be at least 1")
        if request.params.json_schema is not None:
            self.grammar.check(request.params.json_schema, request.params.max_tokens)
        return build_inputs(
            request.messages,
            render=self._render,
            encode=lambda text: self.tokenizer.encode(text, add_special_tokens=False),
            image_features=self._image_features,
            video_features=self._video_features,
            image_token_id=self.image_token_id,
            video_token_id=self.video_token_id,
        )

    def _render(self, messages: list[dict[str, Any]]) -> str:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return str(text)

    def _image_features(self, part: ImagePart) -> ImageFeatures:
        if isinstance(part.image, ImageFeatures):
            return part.image
        return preprocess_image(part.image, self.vision)

    def _video_features(self, part: VideoPart) -> VideoFeatures:
        if isinstance(part.video, VideoFeatures):
            return part.video
        return load_video(part.video, self.vision, fps=part.fps, start=part.start, end=part.end)

    # -- generation ---------------------------------------------------------------------------
    def generate_batch(
        self,
        requests: list[GenerationRequest],
        *,
        prepared: list[ModelInputs] | None = None,
        on_delta: Callable[[int, str], None] | None = None,
        cancels: list[threading.Event] | None = None,
    ) -> list[GenerationResult]:
        """Generate all ``requests`` in one batch; each gets the tokens it would get alone."""
        if not requests:
            return []
        started = time.perf_counter()
        inputs = prepared or [self.prepare(r) for r in requests]
        prepared_at = time.perf_counter()
        rows = [
            RowState(
                params=r.params,
                matcher=self.grammar.matcher(r.params.json_schema, r.params.max_tokens)
                if r.params.json_schema
                else None,
                cancel=cancels[i] if cancels else threading.Event(),
            )
            for i, r in enumerate(requests)
        ]
        first_token: list[float | None] = [None] * len(rows)

        def delta(row: int, text: str) -> None:
            if first_token[row] is None:
                first_token[row] = time.perf_counter()
            if on_delta is not None:
                on_delta(row, text)

        decoder = BatchDecoder(
            rows,
            decode=lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True),
            eos_token_ids=self.eos_token_ids,
            on_delta=delta,
            on_step=self.experts.next_step if self.experts.enabled else None,
        )
        batch = self._collate(inputs)
        with self._lock:
            if self.experts.enabled:
                self.experts.start(len(rows), batch["attention_mask"])
            try:
                self._run_generate(batch, decoder, max(r.params.max_tokens for r in requests))
            except VlserveError:
                raise
            except (RuntimeError, ValueError, IndexError) as err:
                raise EngineError(f"generation failed: {err}") from err
            finally:
                used = self.experts.stop() if self.experts.enabled else None
        done = time.perf_counter()
        results = []
        for i, (row, inp) in enumerate(zip(rows, inputs, strict=True)):
            activated, per_layer = ExpertTracker.summarise(used[i]) if used is not None else (None, None)
            ttft = first_token[i]
            results.append(
                GenerationResult(
                    text=row.text,
                    token_ids=row.tokens,
                    finish_reason=row.finish or "length",
                    usage=Usage(
                        input_tokens=len(inp.input_ids),
                        output_tokens=len(row.tokens),
                        image_tokens=inp.image_tokens,
                        video_tokens=inp.video_tokens,
                    ),
                    confidence=row.confidence,
                    activated_experts=activated,
                    experts_per_layer=per_layer,
                    model=self.model_name,
                    warnings=[
                        f"video {n + 1} is longer than {self.vision.max_video_seconds:g} s: "
                        f"only its first {self.vision.max_video_seconds:g} s were analysed"
                        for n, v in enumerate(inp.videos)
                        if v.truncated
                    ],
                    timings={
                        "prepare_ms": (prepared_at - started) * 1000 if prepared is None else 0.0,
                        "generate_ms": (done - prepared_at) * 1000,
                        "ttft_ms": ((ttft or done) - started) * 1000,
                        "batch_size": float(len(rows)),
                    },
                )
            )
        return results

    def _collate(self, inputs: list[ModelInputs]) -> dict[str, torch.Tensor]:
        """Left-pad the rows into one batch and concatenate the vision tensors in row order."""
        width = max(len(i.input_ids) for i in inputs)
        ids = np.full((len(inputs), width), self.pad_token_id, dtype=np.int64)
        types = np.zeros((len(inputs), width), dtype=np.int64)
        mask = np.zeros((len(inputs), width), dtype=np.int64)
        for b, inp in enumerate(inputs):
            n = len(inp.input_ids)
            ids[b, width - n :] = inp.input_ids
            types[b, width - n :] = inp.mm_token_type_ids
            mask[b, width - n :] = 1
        batch: dict[str, torch.Tensor] = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "mm_token_type_ids": torch.from_numpy(types),
        }
        vision: dict[str, list[np.ndarray]] = {}
        for inp in inputs:
            for key, value in inp.vision_kwargs().items():
                vision.setdefault(key, []).append(value)
        dtype = self.model.dtype
        for key, values in vision.items():
            tensor = torch.from_numpy(np.concatenate(values))
            batch[key] = tensor.to(dtype) if key.startswith("pixel") else tensor
        return {k: v.to(self.device) for k, v in batch.items()}

    def _run_generate(self, batch: dict[str, torch.Tensor], decoder: BatchDecoder, max_new: int) -> None:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        config = GenerationConfig(
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.pad_token_id,
        )
        with torch.inference_mode():
            self.model.generate(
                **batch,
                generation_config=config,
                logits_processor=LogitsProcessorList([decoder]),
                stopping_criteria=StoppingCriteriaList([StopAdapter(decoder)]),
            )

    def generate_sync(self, request: GenerationRequest) -> GenerationResult:
        return self.generate_batch([request])[0]

    def iter_stream(self, request: GenerationRequest, cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """Stream one request from a worker thread: text deltas, then the final result."""
        events: queue.Queue[Any] = queue.Queue()
        counter = itertools.count()
        cancel = cancel or threading.Event()

        def work() -> None:
            try:
                result = self.generate_batch(
                    [request], on_delta=lambda _, text: events.put(TextDelta(text, next(counter))), cancels=[cancel]
                )[0]
                events.put(result)
            except BaseException as err:  # re-raised in the consumer's thread
                events.put(err)
            finally:
                events.put(_DONE)

        thread = threading.Thread(target=work, name="vlserve-generate", daemon=True)
        thread.start()
        try:
            while (event := events.get()) is not _DONE:
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            cancel.set()

    # -- the Engine protocol ------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await asyncio.to_thread(self.generate_sync, request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        counter = itertools.count()

        def on_delta(_: int, text: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, TextDelta(text, next(counter)))

        work = loop.run_in_executor(
            None, lambda: self.generate_batch([request], on_delta=on_delta, cancels=[cancel])[0]
        )
        # Deltas and completion travel through the loop's FIFO, so completion is seen last.
        work.add_done_callback(lambda _: events.put_nowait(_DONE))
        try:
            while (event := await events.get()) is not _DONE:
                yield event
            yield work.result()
        finally:
            cancel.set()  # a client that goes away stops generation at the next token

    async def health(self) -> EngineHealth:
        return EngineHealth(
            ready=True,
            model=self.model_name,
            detail={"device": self.device, "moe": self.checkpoint.is_moe, "path": str(self.checkpoint.path)},
        )
