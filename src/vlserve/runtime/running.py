"""The running batch: requests join and leave between decode steps (continuous batching).

A :class:`RunningBatch` owns one KV cache whose rows are the requests being generated. Each
:meth:`~RunningBatch.step` feeds every row its last token and chooses the next. New requests are
:meth:`~RunningBatch.admit`-ted between steps: they are prefilled together (prompt and vision
encoders) into a cache of their own, which is then left-padded and stacked onto the running one;
rows that finish are cut out at once, and padding columns no row needs any more are trimmed.

Positions follow ``model.generate`` exactly: the prefill uses the model's own multimodal rotary
index (``get_rope_index``), and every later token of a row sits one text position further, shifted
by that row's rope delta. So a request's greedy tokens do not depend on who else is in the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from vlserve.runtime.decoding import Decoder, RowState
from vlserve.runtime.prompt import ModelInputs
from vlserve.runtime.protocol import GenerationRequest

if TYPE_CHECKING:
    from vlserve.runtime.local import LocalEngine


@dataclass(eq=False)
class Sequence:
    """One request on its way through the running batch."""

    request: GenerationRequest
    inputs: ModelInputs
    row: RowState
    on_finish: Callable[[Sequence], None]
    on_error: Callable[[BaseException], None] = lambda _: None
    submitted: float = field(default_factory=time.perf_counter)
    prepare_ms: float = 0.0
    admitted: float | None = None
    first_token: float | None = None
    finished: float | None = None
    largest_batch: int = 0  # the most rows decoded together while this request ran
    position: int = 0  # text position of the token fed next
    rope_delta: int = 0  # multimodal rotary offset: 3D position = text position + delta
    last_token: int = 0
    experts: torch.Tensor | None = None  # (layers, experts) used by this request's tokens


class RunningBatch:
    """Rows being decoded together on one :class:`~vlserve.runtime.local.LocalEngine`."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.decoder = Decoder(decode=engine.detokenize, eos_token_ids=engine.eos_token_ids,
                               incremental=engine.byte_level)
        self.seqs: list[Sequence] = []
        self._cache: Any = None  # transformers' DynamicCache, rows in the order of ``seqs``
        self._mask: torch.Tensor | None = None  # (rows, cache length) real-token mask

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def width(self) -> int:
        """Length of the KV cache: every row is left-padded to the longest."""
        return 0 if self._mask is None else self._mask.shape[1]

    @property
    def remaining(self) -> int:
        """The most tokens any row may still generate: the cache can grow by that much."""
        return max((s.row.params.max_tokens - len(s.row.tokens) for s in self.seqs), default=0)

    @torch.inference_mode()
    def admit(self, new: list[Sequence]) -> None:
        """Prefill ``new`` together, choose their first tokens and add them to the batch."""
        engine = self.engine
        batch = engine.collate([s.inputs for s in new])
        mask = batch["attention_mask"]
        positions, deltas = engine.prefill_positions(batch)
        now = time.perf_counter()
        for s, delta in zip(new, deltas, strict=True):
            s.admitted = now
            s.rope_delta = delta
            s.position = len(s.inputs.input_ids)
        out = self._forward(new, mask, batch, position_ids=positions, logits_to_keep=1)
        self._merge(out.cache, mask)
        self.seqs.extend(new)
        self._choose(new, out.logits[:, -1])

    @torch.inference_mode()
    def step(self) -> None:
        """Feed every row its last token and choose the next one."""
        seqs = self.seqs
        device = self.engine.device
        ids = torch.tensor([[s.last_token] for s in seqs], device=device)
        assert self._mask is not None
        self._mask = torch.cat([self._mask, self._mask.new_ones(len(seqs), 1)], dim=1)
        text = torch.tensor([s.position for s in seqs])
        rope = text + torch.tensor([s.rope_delta for s in seqs])
        positions = torch.stack([text, rope, rope, rope])[:, :, None].to(device)
        # transformers >= 5.24 names the KV cache `cache` (`past_key_values` warns, then goes in 5.40).
        out = self._forward(seqs, torch.ones(len(seqs), 1), {"input_ids": ids}, position_ids=positions,
                            attention_mask=self._mask, cache=self._cache)
        self._cache = out.cache
        for s in seqs:
            s.position += 1
        self._choose(seqs, out.logits[:, -1])

    def clear(self) -> list[Sequence]:
        """Drop every row (after an engine failure); returns them so their callers can be told."""
        seqs, self.seqs, self._cache, self._mask = self.seqs, [], None, None
        return seqs

    # -- internals ------------------------------------------------------------------------------
    def _forward(self, seqs: list[Sequence], valid: torch.Tensor, inputs: dict[str, torch.Tensor],
                 **kwargs: Any) -> Any:
        engine = self.engine
        with engine.lock:
            if "pixel_values" in inputs or "pixel_values_videos" in inputs:  # a prefill with images or videos
                inputs = engine.vision_inputs(inputs, [s.inputs for s in seqs])
            engine.experts.begin(valid)
            try:
                out = engine.model(**inputs, use_cache=True, **kwargs)
            finally:
                used = engine.experts.end()
        if used is not None:
            for s, u in zip(seqs, used, strict=True):
                s.experts = u if s.experts is None else s.experts | u
        return out

    def _choose(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        picks = self.decoder.choose([s.row for s in seqs], logits)
        now = time.perf_counter()
        rows = len(self.seqs)
        for s, token in zip(seqs, picks, strict=True):
            s.largest_batch = max(s.largest_batch, rows)
            if s.row.error is not None:  # this row failed alone: it leaves, the others go on
                s.row.finish = "cancelled"
                continue
            s.last_token = token
            self.decoder.advance(s.row, token)
            if s.first_token is None:
                s.first_token = now
        done = [s for s in self.seqs if s.row.finish is not None]
        if done:
            self._retire(done, now)

    def _merge(self, cache: Any, mask: torch.Tensor) -> None:
        """Stack a freshly prefilled cache under the running one, left-padding the shorter."""
        if self._cache is None or self._mask is None:
            self._cache, self._mask = cache, mask
            return
        width = max(self._mask.shape[1], mask.shape[1])
        for old, fresh in zip(self._cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_left_pad(old.keys, width, dim=-2), _left_pad(fresh.keys, width, dim=-2)])
            old.values = torch.cat([_left_pad(old.values, width, dim=-2), _left_pad(fresh.values, width, dim=-2)])
        self._mask = torch.cat([_left_pad(self._mask, width, dim=1), _left_pad(mask, width, dim=1)])

    def _retire(self, done: list[Sequence], now: float) -> None:
        keep = [i for i, s in enumerate(self.seqs) if s.row.finish is None]
        finished = set(done)
        self.seqs = [s for s in self.seqs if s not in finished]
        if not keep:
            self._cache = self._mask = None
        else:
            assert self._mask is not None
            rows = torch.tensor(keep, device=self._mask.device)
            mask = self._mask[rows]
            first = int(mask.any(dim=0).nonzero()[0])  # leading columns that only padded finished rows
            self._mask = mask[:, first:]
            for layer in self._cache.layers:
                layer.keys = layer.keys[rows, :, first:]
                layer.values = layer.values[rows, :, first:]
        for s in done:
            s.finished = now
            if s.row.error is not None:
                s.on_error(s.row.error)
            else:
                s.on_finish(s)


def _left_pad(tensor: torch.Tensor, width: int, *, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    pad = [0, 0] * (tensor.dim() - 1 - dim % tensor.dim()) + [missing, 0]
    return F.pad(tensor, pad)
