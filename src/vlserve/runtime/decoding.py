"""Per-request decoding inside one batched ``model.generate`` call.

``transformers`` samples with one set of settings per batch and one global RNG. We want every
request in a batch to keep its own temperature, top-p/top-k, penalties, seed, JSON schema, stop
strings and token budget. So generation runs greedy, and :class:`BatchDecoder` does the choosing:

* as a logits processor it turns each row's logits into that request's distribution (penalties,
  grammar mask, temperature, top-k, top-p), picks the token (argmax, or a draw from the request's
  own ``torch.Generator``) and hands ``generate`` a one-hot row, so its argmax takes our pick;
* as a stopping criterion, called after every appended token, it records the token's
  log-probability (for ``confidence``), advances the grammar, detokenizes incrementally, checks
  EOS, stop strings, the request's ``max_tokens`` and cancellation, and emits text deltas.

Greedy rows without penalties or grammar pick exactly ``argmax(logits)``, so results equal a plain
greedy ``model.generate``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, StoppingCriteria

from vlserve.runtime.constrained import JsonMatcher
from vlserve.runtime.protocol import FinishReason, SamplingParams

DeltaCallback = Callable[[int, str], None]


@dataclass
class RowState:
    """Decoding state of one request in the batch."""

    params: SamplingParams
    matcher: JsonMatcher | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator | None = None
    tokens: list[int] = field(default_factory=list)
    logprob_sum: float = 0.0
    pending_logprob: float = 0.0
    text: str = ""
    emitted: int = 0  # characters of ``text`` already sent as deltas
    finish: FinishReason | None = None
    counts: dict[int, int] = field(default_factory=dict)

    @property
    def confidence(self) -> float | None:
        if not self.tokens:
            return None
        return math.exp(self.logprob_sum / len(self.tokens))


class BatchDecoder(LogitsProcessor):
    def __init__(
        self,
        rows: list[RowState],
        *,
        decode: Callable[[list[int]], str],
        eos_token_ids: list[int],
        on_delta: DeltaCallback | None = None,
        on_step: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        self.rows = rows
        self.decode = decode
        self.eos = set(eos_token_ids)
        self.eos_id = eos_token_ids[0]
        self.on_delta = on_delta
        self.on_step = on_step
        for row in rows:
            if row.params.seed is not None:
                row.generator = torch.Generator().manual_seed(row.params.seed)

    # -- choosing ---------------------------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:  # type: ignore[override]
        return self.choose(scores)

    def choose(self, scores: torch.Tensor) -> torch.Tensor:
        picks = torch.full((len(self.rows),), self.eos_id, dtype=torch.long)
        plain = [b for b, row in enumerate(self.rows) if row.finish is None and self._plain_greedy(row)]
        if plain:
            # Plain greedy rows are one vectorised argmax; only rows with settings of their own loop.
            rows = scores[plain].float()
            best = rows.argmax(dim=-1)
            logprobs = rows.gather(1, best[:, None])[:, 0] - torch.logsumexp(rows, dim=-1)
            picks[plain] = best
            for b, lp in zip(plain, logprobs.tolist(), strict=True):
                self.rows[b].pending_logprob = lp
        for b, row in enumerate(self.rows):
            if row.finish is None and b not in plain:
                token, row.pending_logprob = self._pick(row, scores[b].float())
                picks[b] = token
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, picks[:, None].to(scores.device), 0.0)
        return out

    @staticmethod
    def _plain_greedy(row: RowState) -> bool:
        p = row.params
        return p.greedy and row.matcher is None and p.repetition_penalty == 1.0 and p.presence_penalty == 0.0

    def _pick(self, row: RowState, logits: torch.Tensor) -> tuple[int, float]:
        p = row.params
        if row.counts and (p.repetition_penalty != 1.0 or p.presence_penalty != 0.0):
            ids = torch.tensor(list(row.counts), dtype=torch.long)
            seen = logits[ids]
            if p.repetition_penalty != 1.0:
                seen = torch.where(seen > 0, seen / p.repetition_penalty, seen * p.repetition_penalty)
            logits[ids] = seen - p.presence_penalty
        if row.matcher is not None:
            remaining = p.max_tokens - len(row.tokens)
            allowed = torch.from_numpy(row.matcher.allowed(remaining))
            logits = logits.masked_fill(~allowed[: logits.shape[0]], -math.inf)
        if p.greedy:
            token = int(torch.argmax(logits))
            return token, float(logits[token] - torch.logsumexp(logits, 0))
        logits = logits / p.temperature
        candidates: torch.Tensor | None = None  # vocabulary ids of ``logits`` when narrowed
        if 0 < p.top_k < logits.shape[0]:
            logits, candidates = torch.topk(logits, p.top_k)
        probs = torch.softmax(logits, 0)
        if p.top_p < 1.0:
            probs, order = _nucleus(probs, p.top_p)
            candidates = order if candidates is None else candidates[order]
        choice = int(torch.multinomial(probs, 1, generator=row.generator))
        token = choice if candidates is None else int(candidates[choice])
        return token, math.log(float(probs[choice]))


    # -- observing --------------------------------------------------------------------------
    def observe(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Record the token just appended to each row; returns which rows are done."""
        done = torch.zeros(len(self.rows), dtype=torch.bool)
        for b, row in enumerate(self.rows):
            if row.finish is not None:
                done[b] = True
                continue
            token = int(input_ids[b, -1])
            self._advance(b, row, token)
            done[b] = row.finish is not None
        if self.on_step is not None:
            self.on_step(~done)
        return done

    def _advance(self, b: int, row: RowState, token: int) -> None:
        if token in self.eos:
            row.finish = "stop"
            self._flush(b, row, final=True)
            return
        row.tokens.append(token)
        row.logprob_sum += row.pending_logprob
        row.counts[token] = row.counts.get(token, 0) + 1
        if row.matcher is not None:
            row.matcher.consume(token)
        row.text = self.decode(row.tokens)
        for stop in row.params.stop:
            at = row.text.find(stop, max(0, row.emitted - len(stop)))
            if at != -1:
                row.text = row.text[:at]
                row.finish = "stop"
                break
        if row.finish is None and len(row.tokens) >= row.params.max_tokens:
            row.finish = "length"
        if row.finish is None and row.cancel.is_set():
            row.finish = "cancelled"
        self._flush(b, row, final=row.finish is not None)

    def _flush(self, b: int, row: RowState, *, final: bool) -> None:
        """Emit the text that can no longer change: no half UTF-8 character, no partial stop string."""
        end = len(row.text)
        if not final:
            if row.text.endswith("\ufffd"):
                end = len(row.text.rstrip("\ufffd"))
            for stop in row.params.stop:
                for k in range(min(len(stop) - 1, end), 0, -1):
                    if row.text[:end].endswith(stop[:k]):
                        end -= k
                        break
        if end > row.emitted:
            if self.on_delta is not None:
                self.on_delta(b, row.text[row.emitted : end])
            row.emitted = end


class StopAdapter(StoppingCriteria):
    """``generate`` calls stopping criteria with ``(input_ids, scores)``; route them to the decoder."""

    def __init__(self, decoder: BatchDecoder) -> None:
        self.decoder = decoder

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:  # type: ignore[override]
        return self.decoder.observe(input_ids).to(input_ids.device)  # type: ignore[return-value]


def _nucleus(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest set of most likely tokens whose mass reaches ``top_p``, renormalised.

    Real models put most of the mass on a few tokens, so we look at the top 64 first and widen
    only when they are not enough, instead of sorting the whole vocabulary every step.
    """
    k = 64
    while True:
        k = min(k, probs.shape[0])
        top, order = torch.topk(probs, k)
        if float(top.sum()) >= top_p or k == probs.shape[0]:
            break
        k *= 8
    keep = (top.cumsum(0) - top) < top_p
    top, order = top[keep], order[keep]
    return top / top.sum(), order
