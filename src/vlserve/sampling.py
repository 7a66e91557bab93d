"""The documented ranges of the sampling options, shared by every entry point and every engine.

The wire models (`/infer` options, the OpenAI chat request) declare these ranges so that OpenAPI
shows them, and :func:`check_sampling` applies them again where a request reaches an engine, so
a value that would make decoding non-finite (a NaN temperature, a penalty that overflows the
logits, a seed beyond 64 bits) is refused with code 4000 before it can join anyone's batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vlserve.errors import RequestError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_open: bool = False  # True: ``low`` itself is excluded

    def contains(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


TEMPERATURE = Range(0.0, 2.0)  # 0 = greedy
TOP_P = Range(0.0, 1.0, low_open=True)
TOP_K = Range(0, 1_000_000)  # 0 = off; above the vocabulary size = off
REPETITION_PENALTY = Range(0.01, 10.0)  # below 0.01 the penalised logits overflow float32
PRESENCE_PENALTY = Range(-2.0, 2.0)
# torch.Generator.manual_seed takes any value of a signed or unsigned 64-bit integer.
SEED = Range(-(2**63), 2**64 - 1)
TOP_LOGPROBS = Range(0, 20)

RANGES: dict[str, Range] = {
    "temperature": TEMPERATURE,
    "top_p": TOP_P,
    "top_k": TOP_K,
    "repetition_penalty": REPETITION_PENALTY,
    "presence_penalty": PRESENCE_PENALTY,
    "seed": SEED,
    "top_logprobs": TOP_LOGPROBS,
}


def check_sampling(values: dict[str, object], *, max_stop: int | None = None,
                   max_stop_chars: int | None = None) -> None:
    """Raise :class:`RequestError` (4000) naming the first option outside its documented range.

    ``max_stop``/``max_stop_chars`` (the server's limits) bound the stop strings when given."""
    for name, allowed in RANGES.items():
        value = values.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not allowed.contains(value):
            raise RequestError(f"{name} must be a number in {allowed.describe()}, got {value!r}", option=name)
    stop = values.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise RequestError("stop must be a list of strings", option="stop")
    if max_stop is not None and len(stop) > max_stop:
        raise RequestError(f"at most {max_stop} stop strings per request, got {len(stop)}", option="stop")
    for s in stop:
        if not s or (max_stop_chars is not None and len(s) > max_stop_chars):
            raise RequestError(f"each stop string must have 1 to {max_stop_chars or 'any'} characters", option="stop")
