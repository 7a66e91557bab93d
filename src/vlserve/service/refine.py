"""multiview_3d's ``refine`` option: the model's spec, fitted to the photos by structure-from-motion.

"Coarse reasoning + fine fitting" (docs/recon3d.md#refinement). The model writes the spec and it
is built as always; then :mod:`vlserve.recon3d.refine` measures the object in the same photos
(pycolmap SfM, metric scale from a printed ArUco marker, a ChArUco board or one known dimension) and fits the
spec's lengths. SfM takes seconds to minutes, so:

* the option is taken **only by async jobs** (``POST /jobs``); ``/infer`` and ``/infer_stream``
  refuse it (4000) with a message that says to submit a job (:func:`check_refine`);
* it runs in a worker process of its own (:mod:`vlserve.isolation`) under
  ``recon3d.refine.wall_seconds`` and ``memory_bytes``, niced like every isolated worker: a hung
  or huge reconstruction costs its own job only, and a job cancelled mid-way kills its worker;
* it never costs the caller the model: when the photos do not register, there is no scale, the
  fit cannot start or the worker was killed, the job still succeeds with the unrefined model, a
  warning, and ``refine_report`` saying why (``refined: false``, ``code``, ``reason``).

The answer gains ``refined_spec``, ``refine_report`` (each dimension before/after, residuals, the
photos that registered) and ``refined_files`` (``refined.glb``, … and ``refined.json``) beside
the model's own files, in the same artefact directory, owned by the same key. The photos are
decoded and written for COLMAP inside the worker, in a dot-directory of the request's artefact
directory that no URL can name, and deleted when the refinement ends, whatever the outcome.

:func:`refine_answer` is the one entry point for the job (:func:`refine_job`) and the CLI
(``vlserve recon3d from-images --refine-marker-mm / --refine-charuco / --refine-known``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlserve.config import Settings
from vlserve.errors import EngineError, GeometryLimitError, RequestError, VlserveError
from vlserve.isolation.pool import (
    IsolationError,
    WorkerCrashed,
    WorkerLimits,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
)
from vlserve.jobs.worker import report_progress
from vlserve.recon3d.build import SPEC_FILE
from vlserve.recon3d.refine.isolated import PRELOAD, refine_photos
from vlserve.recon3d.refine.options import CharucoSpec, known_dimension_text, scale_source
from vlserve.recon3d.refine.pipeline import refine_options
from vlserve.schemas import InferRequest, RefineOption
from vlserve.service import artifact_store

if TYPE_CHECKING:
    from vlserve.service.call import Call
    from vlserve.service.inference import Outcome

log = logging.getLogger("vlserve.recon3d")

TASK = "multiview_3d"
NEEDS_JOB = ("options.refine runs structure-from-motion on the photos, which takes seconds to minutes: submit "
             "this request as an async job (POST /jobs, then GET /jobs/{id}); /infer and /infer_stream do not "
             "take it")
WORKDIR = ".refine"
"""the photos and COLMAP's files, inside the request's artefact directory (a dot-name: never served)"""
BASENAME = "refined"
REFINED_SPEC_FILE = f"{BASENAME}.json"
CPU_PER_WALL = 4.0
"""CPU seconds per wall second (feature extraction, matching and the fit use a few threads)"""

_lock = threading.Lock()
_pools: dict[tuple[WorkerLimits, int], WorkerPool] = {}


def check_refine(call: Call, settings: Settings) -> RefineOption | None:
    """The request's ``options.refine`` if it may run, None without one; 4000 otherwise: another
    task than multiview_3d, not a job (``/infer``), or too few or too many photos for SfM."""
    refine = call.options.refine
    if refine is None:
        return None
    if call.task.name != TASK:
        raise RequestError(f"options.refine is an option of task {TASK!r} only", param="refine")
    if not call.job:
        raise RequestError(NEEDS_JOB, param="refine")
    scale_of(refine)  # a blank known dimension name, a board that cannot be: 4000 now, not after the model
    limits = settings.recon3d.refine
    if not limits.min_registered <= len(call.images) <= limits.max_photos:
        raise RequestError(f"options.refine needs {limits.min_registered} to {limits.max_photos} photos of the "
                           f"object from all around (recon3d.refine.min_registered, max_photos), got "
                           f"{len(call.images)}", param="refine")
    return refine


def check_submission(request: InferRequest, settings: Settings) -> None:
    """At ``POST /jobs``: an ``options.refine`` that could not run is refused (4000) before the job
    is queued, not found out minutes later."""
    if request.options.refine is not None:
        from vlserve.service.call import Call

        call = Call.of(request)
        call.job = True
        check_refine(call, settings)


def scale_of(refine: RefineOption) -> tuple[float | None, str | None, CharucoSpec | None]:
    """``(marker_size_mm, known_dimension, charuco)`` for the library from the wire option
    (:class:`~vlserve.recon3d.refine.errors.ScaleError`, 4000, for a board that cannot be)."""
    known, board = refine.known_dimension, refine.charuco
    charuco = None if board is None else CharucoSpec(board.squares_x, board.squares_y, board.square_mm,
                                                     board.marker_mm, board.dictionary)
    return (refine.marker_size_mm, None if known is None else known_dimension_text(known.parameter, known.mm),
            charuco)


def refine_pool(settings: Settings) -> WorkerPool:
    """The worker processes refinements run in (``recon3d.refine.workers``, limits from config)."""
    cfg = settings.recon3d.refine
    limits = WorkerLimits(wall_seconds=cfg.wall_seconds, cpu_seconds=cfg.wall_seconds * CPU_PER_WALL,
                          memory_bytes=cfg.memory_bytes, preload=PRELOAD, nice=settings.limits.worker_nice)
    key = (limits, cfg.workers)
    with _lock:
        if key not in _pools:
            _pools[key] = WorkerPool("refine", cfg.workers, limits)
        return _pools[key]


async def refine_job(settings: Settings, outcome: Outcome, refine: RefineOption) -> None:
    """After a multiview_3d job's model answered: refine its spec with the job's photos and add
    ``refined_spec``, ``refine_report`` and ``refined_files`` to its answer (in place)."""
    from vlserve.tasks.multiview_3d import formats

    prepared = outcome.prepared
    assert prepared is not None, "the outcome of a refine job keeps its prepared inputs"
    inp = prepared.task_input
    assert inp.artifacts_dir is not None
    marker, known, charuco = scale_of(refine)
    report_progress(0.4)  # the model has answered and its files are built
    await refine_answer(settings, outcome.answer, prepared.photos, photo_names(len(prepared.photos)),
                        inp.artifacts_dir, inp.artifacts_url, formats(inp), marker_size_mm=marker,
                        known_dimension=known, charuco=charuco, progress=report_progress)
    # The refined files sit beside the model's: same key (and, with the S3 store, the same bucket).
    await artifact_store.keep(settings, inp.artifacts_dir, prepared.key_id)


async def refine_answer(settings: Settings, answer: dict[str, Any], photos: list[bytes], names: list[str],
                        outdir: Path, url_prefix: str, formats: list[str], *, marker_size_mm: float | None,
                        known_dimension: str | None, charuco: CharucoSpec | None = None,
                        progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Refine ``answer["spec"]`` against ``photos`` (encoded images named ``names``) and build the
    refined spec into ``outdir`` (``refined.<fmt>``, ``refined.json``); ``answer`` gains
    ``refined_spec``, ``refine_report`` and ``refined_files`` (format → ``url_prefix`` + name),
    and a warning when the model could not be refined. Never raises for what the photos or the
    worker did: that is reported; returns ``answer``."""
    answer["refined_spec"], answer["refined_files"] = None, {}
    answer.setdefault("warnings", [])
    work = outdir / WORKDIR
    try:
        result = await _run_refinement(settings, answer["spec"], photos, names, work,
                                       marker_size_mm=marker_size_mm, known_dimension=known_dimension,
                                       charuco=charuco)
    except VlserveError as err:
        _not_refined(answer, err)
        return answer
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the photos never outlive the refinement
    if progress is not None:
        progress(0.85)
    answer["refined_spec"] = result["spec"]
    answer["refine_report"] = {"refined": True, **result["report"]}
    try:
        answer["refined_files"] = await _build_refined(settings, result["spec"], outdir, url_prefix, formats,
                                                       answer["warnings"])
    except VlserveError as err:
        answer["warnings"].append(f"the refined spec could not be built into files ({err.message}); "
                                  "refined_spec holds it")
    if progress is not None:
        progress(0.95)
    return answer


async def _run_refinement(settings: Settings, spec: dict[str, Any], photos: list[bytes], names: list[str],
                          work: Path, *, marker_size_mm: float | None, known_dimension: str | None,
                          charuco: CharucoSpec | None = None) -> dict[str, Any]:
    """The refinement in its worker; every failure as a coded :class:`VlserveError`."""
    cfg = settings.recon3d.refine
    marker, known, board = scale_source(marker_size_mm, known_dimension, charuco)
    missing = [m for m in ("pycolmap", "cv2") if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineError(f"refinement needs {', '.join(missing)}: install the 'refine' extra "
                          "(pip install 'vlserve[refine]')")
    work.mkdir(parents=True, exist_ok=True)
    try:
        result: dict[str, Any] = await refine_pool(settings).arun(
            refine_photos, spec, photos, names, str(work), marker_size_mm=marker, known_dimension=known,
            options=refine_options(cfg), charuco=board)
    except WorkerTimeout as err:
        raise GeometryLimitError(f"the refinement took longer than {cfg.wall_seconds:g} s "
                                 "(recon3d.refine.wall_seconds) and was stopped") from err
    except WorkerOutOfMemory as err:
        raise GeometryLimitError(f"the refinement needed more than {cfg.memory_bytes / 2**30:.1f} GiB "
                                 "(recon3d.refine.memory_bytes) and was stopped") from err
    except WorkerCrashed as err:
        log.warning("refinement worker stopped: %s", err)
        raise EngineError("the refinement stopped unexpectedly in its worker") from err
    except IsolationError as err:
        raise EngineError(f"the refinement could not run in its worker ({err.reason})") from err
    except VlserveError:
        raise
    except Exception as err:  # the pool itself failed, not the photos: ours, logged; the model still goes out
        log.exception("refinement worker pool failed")
        raise EngineError(f"the refinement could not run in its worker ({type(err).__name__})") from err
    return result


def _not_refined(answer: dict[str, Any], err: VlserveError) -> None:
    report: dict[str, Any] = {"refined": False, "code": err.code, "reason": err.message}
    registered, unregistered = err.details.get("registered"), err.details.get("unregistered")
    if isinstance(registered, list) and isinstance(unregistered, list):  # too few views: say which
        report["views"] = {"photos": len(registered) + len(unregistered), "registered": registered,
                           "unregistered": unregistered}
    if isinstance(err.details.get("parameters"), list):  # an unknown known-dimension name: the choices
        report["parameters"] = err.details["parameters"]
    answer["refine_report"] = report
    answer["warnings"].append(f"the model was not refined ({err.message}); these are the unrefined files")


async def _build_refined(settings: Settings, spec: dict[str, Any], outdir: Path, url_prefix: str,
                         formats: list[str], warnings: list[str]) -> dict[str, str]:
    """Build the refined spec (bounded, in the recon3d pools) and place its files beside the
    model's as ``refined.*``: built in a dot-directory first, because every build writes its spec
    as ``spec.json``, which here is the model's own."""
    from vlserve.tasks.multiview_3d.building import build

    stage = outdir / f"{WORKDIR}-build"
    try:
        built = await asyncio.to_thread(build, spec, stage, formats, settings.recon3d, basename=BASENAME,
                                        repair=False)
        files: dict[str, str] = {}
        for fmt, path in built.files.items():
            name = REFINED_SPEC_FILE if path.name == SPEC_FILE else path.name
            os.replace(path, outdir / name)
            files[fmt] = url_prefix + name
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    warnings.extend(f"refined model: {w}" for w in built.warnings)
    return files


def photo_names(count: int) -> list[str]:
    """The names a job's photos have in the report: ``photo_01.png``, … in request order."""
    return [f"photo_{i:02d}.png" for i in range(1, count + 1)]


def file_names(paths: list[Path]) -> list[str]:
    """Report names for local photos (the CLI): their stems as ``.png``, made safe and unique."""
    names: list[str] = []
    for i, path in enumerate(paths, 1):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)[:80] or f"photo_{i:02d}"
        name = f"{stem}.png"
        names.append(name if name not in names else f"{i:02d}_{name}")
    return names


__all__ = ["NEEDS_JOB", "check_refine", "check_submission", "file_names", "photo_names", "refine_answer",
           "refine_job", "refine_pool", "scale_of"]
