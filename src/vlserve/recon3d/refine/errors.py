"""Errors of refinement, under :class:`vlserve.errors.RequestError` (code 4000).

RequestError                 4000
└── RefineError              4000  photos, marker or parameters cannot give a refinement
    ├── TooFewViewsError     4000  too few photos registered (``details``: registered, unregistered)
    └── ScaleError           4000  no metric scale: marker not found, unknown dimension name
"""

from __future__ import annotations

from vlserve.errors import RequestError


class RefineError(RequestError):
    """Refinement cannot proceed; the message says why and what to do."""


class TooFewViewsError(RefineError):
    """Structure-from-motion registered too few photos; ``registered``/``unregistered`` name them."""

    def __init__(self, message: str, *, registered: list[str], unregistered: list[str]) -> None:
        super().__init__(message, registered=registered, unregistered=unregistered)
        self.registered = registered
        self.unregistered = unregistered


class ScaleError(RefineError):
    """No metric scale: the marker was not seen in enough views, or a known dimension is unknown."""
