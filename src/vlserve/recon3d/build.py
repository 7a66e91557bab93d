"""The two halves of a build as plain functions, so a caller can run each in a process it may kill.

:func:`build_files` compiles a spec (with repairs) and writes the mesh and script formats;
:func:`build_step` writes STEP from the spec alone (it needs the plan, not the mesh) and
:func:`build_preview` the PNG. Both take
and return plain data (dicts, strings, :class:`~.budget.BuildLimits`), so they cross a process
boundary unchanged, and both work in-process just as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlserve.errors import VlserveError
from vlserve.recon3d.budget import BuildLimits
from vlserve.recon3d.errors import GeometryError

SPEC_FILE = "spec.json"
SEPARATE = ("png", "step")
"""formats written by their own function (and process), each under its own time limit"""


def build_files(document: dict[str, Any], outdir: str, formats: list[str], limits: BuildLimits,
                basename: str = "model", repair: bool = True) -> dict[str, Any]:
    """Compile ``document`` under ``limits`` and write ``formats`` (not ``step``) into ``outdir``.

    Returns ``{"spec", "summary", "warnings", "files"}``; each file is ``{"format", "path",
    "bytes", "seconds"}``, the STL also with ``"watertight"`` as read back from the file. A format
    whose writer fails is left out with a warning; the compile failing raises. ``repair=False``
    builds the spec exactly as given (a part that cannot be built is an error, not dropped).
    """
    from vlserve.recon3d.checks import stl_is_watertight
    from vlserve.recon3d.compiler import compile_spec
    from vlserve.recon3d.exporters import export_files
    from vlserve.recon3d.repair import compile_with_repair

    try:
        if repair:
            spec, model, warnings = compile_with_repair(document, segments=limits.segments, limits=limits)
        else:
            model = compile_spec(document, segments=limits.segments, limits=limits)
            spec, warnings = model.spec, []
    except VlserveError:
        raise
    except Exception as err:  # a kernel failure on odd input is a refusal, not a crash
        raise GeometryError(f"the geometry kernel could not build this spec ({type(err).__name__}: {err})") from err
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    for fmt in formats:
        if fmt in SEPARATE:
            continue
        try:
            item = export_files(model, out, [fmt], basename=basename)[0]
        except Exception as err:
            warnings.append(f"{fmt} was not written: {type(err).__name__}: {err}")
            continue
        entry: dict[str, Any] = {"format": fmt, "path": str(item.path), "bytes": item.bytes,
                                 "seconds": item.seconds}
        if fmt == "stl":
            entry["watertight"] = stl_is_watertight(item.path)
            if model.watertight and not entry["watertight"]:
                warnings.append(f"{item.path.name} is not watertight as written: float32 coordinates merge "
                                "vertices of features this small at this size")
        files.append(entry)
    (out / SPEC_FILE).write_text(spec.model_dump_json(indent=2, exclude_none=True), encoding="utf-8")
    return {
        "spec": spec.model_dump(mode="json", exclude_none=True),
        "summary": model.summary(),
        "warnings": warnings + [w for w in model.warnings if w not in warnings],
        "files": files,
    }


def build_step(spec: dict[str, Any], path: str) -> int:
    """Write the STEP file of ``spec`` to ``path``; returns its size in bytes."""
    from vlserve.recon3d.exporters.step import write_plan_step
    from vlserve.recon3d.plan import build_plan
    from vlserve.recon3d.validation import load_spec

    written = write_plan_step(build_plan(load_spec(spec)), Path(path))
    return written.stat().st_size


def build_preview(spec: dict[str, Any], path: str, segments: int) -> int:
    """Compile ``spec`` again and draw its PNG preview to ``path``; returns its size in bytes.

    On its own so that a slow preview (a first use of the fonts, a huge mesh) costs a warning,
    not the whole build.
    """
    from vlserve.recon3d.compiler import compile_spec
    from vlserve.recon3d.exporters.preview import render_preview

    written = render_preview(compile_spec(spec, segments=segments), Path(path))
    return written.stat().st_size


__all__ = ["SPEC_FILE", "BuildLimits", "build_files", "build_preview", "build_step"]
