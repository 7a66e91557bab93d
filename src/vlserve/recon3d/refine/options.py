"""Refinement's options from the configuration and from what a caller typed, in one place.

The CLI (``vlserve recon3d refine``, ``from-images --refine-…``) and the service (the
``multiview_3d`` job option ``refine``) both use these, so the same bounds and the same spelling of
a known dimension hold everywhere:

* :func:`refine_options`: :class:`RefineOptions` from ``Settings.recon3d.refine``;
* :func:`known_dimension_text`: ``("f.diameter", 80.0)`` → ``"f.diameter=80mm"``, the form
  :func:`~vlserve.recon3d.refine.pipeline.refine` reads;
* :func:`scale_source`: exactly one of a marker size and a known dimension, or a
  :class:`ScaleError` (4000) saying so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vlserve.recon3d.refine.errors import ScaleError

if TYPE_CHECKING:
    from vlserve.config import Recon3DRefine
    from vlserve.recon3d.refine.pipeline import RefineOptions

MAX_MARKER_MM = 2000.0
"""a printed marker larger than 2 m is a typo (cm for mm, say), not a marker"""
MAX_DIMENSION_MM = 1_000_000.0
"""1 km: the spec's own size limit is far below; anything beyond is a typo"""
MAX_PARAMETER_CHARS = 200


def refine_options(limits: Recon3DRefine) -> RefineOptions:
    """:class:`RefineOptions` from ``Settings.recon3d.refine`` (the configured bounds)."""
    from vlserve.recon3d.refine.fit import FitOptions
    from vlserve.recon3d.refine.pipeline import RefineOptions
    from vlserve.recon3d.refine.sfm import SfmOptions

    return RefineOptions(
        sfm=SfmOptions(
            max_photos=limits.max_photos,
            max_image_size=limits.max_image_size,
            max_features=limits.max_features,
            min_registered=limits.min_registered,
            mapping_seconds=limits.mapping_seconds,
        ),
        fit=FitOptions(
            seconds=limits.fit_seconds,
            max_evaluations=limits.fit_evaluations,
            max_points=limits.fit_points,
            max_change=limits.max_change,
        ),
        min_object_points=limits.min_object_points,
    )


def check_marker_mm(value: float) -> float:
    """A marker side in mm, or :class:`ScaleError` (4000) for zero, negative, NaN or absurd sizes."""
    if not (math.isfinite(value) and 0 < value <= MAX_MARKER_MM):
        raise ScaleError(f"the marker size must be a number of mm in (0, {MAX_MARKER_MM:g}], got {value!r}",
                         param="marker_size_mm")
    return float(value)


def known_dimension_text(parameter: str, mm: float) -> str:
    """``PARAM=VALUEmm`` for :func:`refine` from a parameter name and a length in mm (checked:
    4000 for an empty or over-long name, one holding ``=`` or control characters, or a length
    that is not in (0, 1 km])."""
    name = parameter.strip()
    if not name or len(name) > MAX_PARAMETER_CHARS or "=" in name or any(ord(c) < 32 for c in name):
        raise ScaleError(f"known dimension: the parameter must be a spec length's name such as 'f.diameter' "
                         f"or 'diameter' (1-{MAX_PARAMETER_CHARS} characters, no '='), got {parameter[:60]!r}",
                         param="known_dimension.parameter")
    if not (math.isfinite(mm) and 0 < mm <= MAX_DIMENSION_MM):
        raise ScaleError(f"known dimension: the length must be a number of mm in (0, {MAX_DIMENSION_MM:g}], "
                         f"got {mm!r}", param="known_dimension.mm")
    return f"{name}={mm:.10g}mm"


def scale_source(marker_size_mm: float | None, known_dimension: str | None) -> tuple[float | None, str | None]:
    """Exactly one source of scale, checked; :class:`ScaleError` (4000) for none or both."""
    if (marker_size_mm is None) == (known_dimension is None):
        raise ScaleError("give exactly one source of scale: a printed marker's size in mm, or one known "
                         "dimension of the spec (PARAM=VALUE)")
    if marker_size_mm is not None:
        return check_marker_mm(marker_size_mm), None
    assert known_dimension is not None
    if "=" not in known_dimension:
        raise ScaleError(f"known dimension {known_dimension[:60]!r}: write PARAM=VALUE, e.g. f.diameter=80mm")
    return None, known_dimension


__all__ = [
    "MAX_DIMENSION_MM",
    "MAX_MARKER_MM",
    "check_marker_mm",
    "known_dimension_text",
    "refine_options",
    "scale_source",
]
