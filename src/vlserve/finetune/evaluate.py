"""Greedy answers of the real engine against a data file's reference answers.

Each record's last assistant turn is the reference; everything before it (system prompt, earlier
turns with their reference answers, images and videos) is the prompt, prepared by the engine
exactly as a served request. Two scores:

* **exact match**: the answer equals the reference after stripping surrounding whitespace;
* **token accuracy**: reference tokens reproduced at the same position of the answer, over all
  reference tokens (partial credit for long answers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve.finetune.dataset import Skipped
from vlserve.finetune.records import DataError, load_records, parse_record
from vlserve.finetune.samples import to_messages
from vlserve.runtime.protocol import GenerationRequest, SamplingParams

__all__ = ["EvalItem", "EvalReport", "evaluate"]


@dataclass
class EvalItem:
    index: int
    reference: str
    answer: str
    exact: bool
    matched_tokens: int
    reference_tokens: int


@dataclass
class EvalReport:
    items: list[EvalItem]
    seconds: float
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def exact_match(self) -> float:
        return sum(i.exact for i in self.items) / len(self.items) if self.items else 0.0

    @property
    def token_accuracy(self) -> float:
        total = sum(i.reference_tokens for i in self.items)
        return sum(i.matched_tokens for i in self.items) / total if total else 0.0

    def summary(self) -> dict[str, Any]:
        return {"records": len(self.items), "exact_match": round(self.exact_match, 4),
                "token_accuracy": round(self.token_accuracy, 4), "skipped": len(self.skipped),
                "seconds": round(self.seconds, 2)}


def evaluate(engine: Any, data: Path, *, batch_size: int = 8, max_tokens: int = 256, skip_bad: bool = False,
             media_root: Path | None = None, max_records: int | None = None) -> EvalReport:
    """Score ``engine`` (a :class:`~vlserve.runtime.local.LocalEngine`) on ``data`` with greedy decoding."""
    base = media_root or data.resolve().parent
    started = time.perf_counter()
    pending: list[tuple[int, str, GenerationRequest]] = []
    skipped: list[Skipped] = []
    for index, record in enumerate(load_records(data, max_records=max_records)):
        try:
            conv = parse_record(index, record, base=base)
            messages = to_messages(conv, engine.vision, upto=-1)
        except DataError as err:
            if not skip_bad:
                raise
            skipped.append(Skipped(err.index, err.field, err.problem))
            continue
        reference = conv.turns[-1].text
        ref_ids = engine.tokenizer.encode(reference, add_special_tokens=False)
        # A little room beyond the reference: a longer answer is wrong, and stops costing here.
        params = SamplingParams(max_tokens=max(1, min(max_tokens, len(ref_ids) + 8)), temperature=0.0)
        pending.append((index, reference, GenerationRequest(messages, params, request_id=f"eval-{index}")))
    items: list[EvalItem] = []
    for start in range(0, len(pending), batch_size):
        chunk = pending[start : start + batch_size]
        results = engine.generate_batch([req for _, _, req in chunk])
        for (index, reference, _), result in zip(chunk, results, strict=True):
            ref_ids = engine.tokenizer.encode(reference, add_special_tokens=False)
            got = [t for t in result.token_ids if t not in engine.eos_token_ids]
            matched = sum(a == b for a, b in zip(got, ref_ids, strict=False))
            items.append(EvalItem(index, reference, result.text, result.text.strip() == reference.strip(), matched,
                                  len(ref_ids)))
    return EvalReport(items, time.perf_counter() - started, skipped)
