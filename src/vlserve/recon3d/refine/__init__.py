"""Coarse reasoning + fine fitting: photos measure what the model's spec only guessed.

A vision-language model writes the spec's topology and rough numbers; this package measures the
object in the photos and fits the numbers:

    photos ──run_sfm (pycolmap)──▶ sparse points + cameras
           ──marker_frame (ArUco) / plane_frame──▶ world frame in mm, z up, ground at z = 0
           ──object_points──▶ the object's points
           ──fit_spec──▶ pose + every length of the spec, topology fixed (least squares)

:func:`refine` runs it all and returns the refined spec and a report (each dimension before and
after, residuals, which photos registered). A pure geometry library: no service, task or API
imports. Needs the extra ``refine`` (pycolmap, opencv-contrib-python-headless; embreex for the
test renderer in :mod:`.render`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlserve.recon3d.refine.errors import RefineError, ScaleError, TooFewViewsError

if TYPE_CHECKING:
    from vlserve.recon3d.refine.fit import FitOptions, FitResult, fit_spec
    from vlserve.recon3d.refine.pipeline import RefineOptions, RefineResult, format_report, refine
    from vlserve.recon3d.refine.sfm import SfmOptions, SfmResult, run_sfm

_LAZY = {
    "FitOptions": "vlserve.recon3d.refine.fit",
    "FitResult": "vlserve.recon3d.refine.fit",
    "fit_spec": "vlserve.recon3d.refine.fit",
    "RefineOptions": "vlserve.recon3d.refine.pipeline",
    "RefineResult": "vlserve.recon3d.refine.pipeline",
    "format_report": "vlserve.recon3d.refine.pipeline",
    "refine": "vlserve.recon3d.refine.pipeline",
    "SfmOptions": "vlserve.recon3d.refine.sfm",
    "SfmResult": "vlserve.recon3d.refine.sfm",
    "run_sfm": "vlserve.recon3d.refine.sfm",
}

__all__ = [
    "FitOptions",
    "FitResult",
    "RefineError",
    "RefineOptions",
    "RefineResult",
    "ScaleError",
    "SfmOptions",
    "SfmResult",
    "TooFewViewsError",
    "fit_spec",
    "format_report",
    "refine",
    "run_sfm",
]


def __getattr__(name: str) -> Any:
    # PEP 562: scipy, trimesh and manifold3d load on first use
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlserve.recon3d.refine' has no attribute {name!r}")
