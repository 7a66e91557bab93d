"""Cache keys: a SHA-256 of canonical JSON, so that equal inputs give equal keys on every replica."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def digest(material: Any) -> str:
    """Hex SHA-256 of ``material`` as canonical JSON (sorted keys, no spaces; tuples as lists;
    dataclasses by their fields). Raises ``TypeError`` for what JSON cannot hold."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain,
                      allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} cannot be part of a cache key")
