"""Build a spec into files under hard limits: refused up front, or run in worker processes that are killed.

1. Up front, in the caller: the spec is validated (with repairs) and its expansion counted; one
   over ``recon3d.max_primitives`` / ``max_triangles`` is refused with 4000 before any CSG.
2. The compile and the mesh and script files run in a worker of the ``recon3d`` pool
   (:mod:`vlserve.isolation`): past ``compile_seconds + export_seconds`` of wall time, or
   ``memory_bytes``, the worker is killed and the request answers 4013.
3. STEP and the PNG preview, when asked for, each run in a pool of their own with their own
   ``export_seconds``: when the CAD kernel (or the preview) fails or runs out of time, the files of
   step 2 stand and a warning says which one is missing.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlserve.config import Recon3D
from vlserve.errors import EngineError, GeometryLimitError, VlserveError
from vlserve.isolation.pool import (
    IsolationError,
    WorkerCrashed,
    WorkerLimits,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
)
from vlserve.recon3d.budget import BuildLimits, check_budget, check_spec_size
from vlserve.recon3d.build import SEPARATE, SPEC_FILE, build_files, build_preview, build_step
from vlserve.recon3d.errors import GeometryError
from vlserve.recon3d.exporters import FORMATS
from vlserve.recon3d.plan import build_plan
from vlserve.recon3d.repair import validate_with_repair
from vlserve.recon3d.validation import load_spec

_MESH_PRELOAD = ("numpy", "manifold3d", "trimesh", "vlserve.recon3d.build",
                 "vlserve.recon3d.compiler", "vlserve.recon3d.exporters")
_STEP_PRELOAD = ("build123d", "vlserve.recon3d.build", "vlserve.recon3d.exporters.step")
_PRELOAD = {"mesh": _MESH_PRELOAD, "step": _STEP_PRELOAD,
            "preview": ("numpy", "manifold3d", "matplotlib.figure", "vlserve.recon3d.exporters.preview")}
CPU_PER_WALL = 4.0
"""CPU seconds allowed per wall second (the CSG and CAD kernels use several threads)"""

_lock = threading.Lock()
_pools: dict[tuple[str, WorkerLimits, int], WorkerPool] = {}


def limits_from(cfg: Recon3D) -> BuildLimits:
    """The geometry library's limits from the service configuration."""
    return BuildLimits(max_primitives=cfg.max_primitives, max_triangles=cfg.max_triangles,
                       compile_seconds=cfg.compile_seconds, export_seconds=cfg.export_seconds,
                       segments=cfg.segments)


def _pool(kind: str, wall: float, cfg: Recon3D) -> WorkerPool:
    limits = WorkerLimits(wall_seconds=wall, cpu_seconds=wall * CPU_PER_WALL, memory_bytes=cfg.memory_bytes,
                          preload=_PRELOAD[kind])
    key = (kind, limits, cfg.workers)
    with _lock:
        if key not in _pools:
            _pools[key] = WorkerPool(f"recon3d-{kind}", cfg.workers, limits)
        return _pools[key]


def has_cad() -> bool:
    """True when build123d (extra ``cad``) is installed."""
    return importlib.util.find_spec("build123d") is not None


@dataclass
class Built:
    """What a build wrote and what the caller should know about it."""

    spec: dict[str, Any]
    summary: dict[str, Any]
    files: dict[str, Path]
    """format → file, ``spec`` included"""
    sizes: dict[str, tuple[int, float]] = field(default_factory=dict)
    """format → (bytes, seconds)"""
    warnings: list[str] = field(default_factory=list)


def build(document: str | bytes | dict[str, Any], outdir: Path, formats: list[str], cfg: Recon3D, *,
          basename: str = "model", repair: bool = True) -> Built:
    """Validate, compile and export ``document`` under ``cfg``'s limits (see the module docstring).

    Raises :class:`~vlserve.recon3d.errors.SpecError` (4000) for a spec that cannot be repaired
    or is over the size limits, :class:`GeometryLimitError` (4013) for a build past its time or
    memory limit, :class:`GeometryError` (4000) when the kernel cannot build it at all. With
    ``repair=False`` the spec is built as given (``vlserve recon3d build``): no part is dropped.
    """
    limits = limits_from(cfg)
    if repair:
        spec, warnings = validate_with_repair(document, limits=limits)
    else:
        spec, warnings = load_spec(document), []
        check_spec_size(spec, limits)
        check_budget(build_plan(spec), limits)
    doc = spec.model_dump(mode="json", exclude_none=True)
    wall = cfg.compile_seconds + cfg.export_seconds
    try:
        result = _pool("mesh", wall, cfg).run(build_files, doc, str(outdir), list(formats), limits, basename,
                                              repair)
    except WorkerTimeout as err:
        raise GeometryLimitError(
            f"building the model took longer than {wall:g} s (recon3d.compile_seconds + export_seconds) and "
            "was stopped; simplify the spec (fewer parts or pattern copies)") from err
    except WorkerOutOfMemory as err:
        raise GeometryLimitError(f"building the model needed more than {cfg.memory_bytes / 2**30:.1f} GiB "
                                 "(recon3d.memory_bytes) and was stopped; simplify the spec") from err
    except WorkerCrashed as err:
        raise GeometryError("the geometry kernel stopped on this spec; simplify the spec") from err
    except (VlserveError, IsolationError):
        raise
    except Exception as err:  # the pool itself failed (not the spec): ours to fix, with a code
        raise EngineError(f"the 3D build could not run in its worker ({type(err).__name__})") from err
    built = Built(spec=result["spec"], summary=result["summary"], files={},
                  warnings=warnings + [w for w in result["warnings"] if w not in warnings])
    for entry in result["files"]:
        built.files[entry["format"]] = Path(entry["path"])
        built.sizes[entry["format"]] = (int(entry["bytes"]), float(entry["seconds"]))
        if "watertight" in entry:
            built.summary.setdefault("written", {})[entry["format"]] = {"watertight": entry["watertight"]}
    for fmt in SEPARATE:
        if fmt in formats:
            _add_separate(fmt, built, outdir, basename, cfg)
    built.files["spec"] = outdir / SPEC_FILE
    # the order the caller asked for, spec last
    built.files = {f: built.files[f] for f in [*formats, "spec"] if f in built.files}
    return built


def _add_separate(fmt: str, built: Built, outdir: Path, basename: str, cfg: Recon3D) -> None:
    """PNG or STEP in its own worker, under ``export_seconds``: a failure costs a warning, not the build."""
    name = fmt.upper()
    if fmt == "step" and not has_cad():
        built.warnings.append("STEP was skipped: install the 'cad' extra (build123d) for exact B-rep output")
        return
    path = outdir / FORMATS[fmt].filename(basename)
    start = time.perf_counter()
    try:
        if fmt == "step":
            size = _pool("step", cfg.export_seconds, cfg).run(build_step, built.spec, str(path))
        else:
            size = _pool("preview", cfg.export_seconds, cfg).run(build_preview, built.spec, str(path), cfg.segments)
        built.files[fmt] = path
        built.sizes[fmt] = (size, time.perf_counter() - start)
    except WorkerTimeout:
        built.warnings.append(f"{name} export stopped after {cfg.export_seconds:g} s (recon3d.export_seconds); "
                              "the mesh files are complete")
    except (IsolationError, VlserveError) as err:
        reason = err.message if isinstance(err, VlserveError) else err.reason
        built.warnings.append(f"{name} export failed ({reason}); the mesh files are complete")
    if fmt not in built.files:
        path.unlink(missing_ok=True)
