"""Every output format of a compiled model, in one registry: :data:`FORMATS`.

| format | file | content |
|---|---|---|
| ``glb``  | model.glb  | one node per part (part id, PBR material, colour); **metres, +Y up** (glTF) |
| ``stl``  | model.stl  | the watertight solid, binary, mm |
| ``obj``  | model.obj + model.mtl | the watertight solid, mm, one group + material per part |
| ``ply``  | model.ply  | the watertight solid, binary, mm, per-face colours |
| ``step`` | model.step | B-rep rebuilt with build123d/OCCT (extra ``cad``), mm |
| ``scad`` | model.scad | OpenSCAD source that rebuilds the model, mm |
| ``py``   | model_blender.py | Blender script (bpy primitives + boolean modifiers), mm |
| ``png``  | model.png  | 2×2 preview (isometric, front, side, top) |

Each entry names the module and function that writes it; the module is imported on first use,
so asking which formats exist loads no exporter (and no optional dependency). :func:`export` and
:func:`export_files` write a compiled model in any of them. (This package is ``exporters``, not
``export``, so the module never shadows the :func:`vlserve.recon3d.export` function.)

The GLB also carries the spec in its scene's ``extras``. It is a scene of per-part pieces of the
one CSG result (faces keep the part they came from), so its pieces together are exactly the
watertight solid of the other formats.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from vlserve.errors import RequestError

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

Writer = Callable[["CompiledModel", Path], Path]
Kind = Literal["mesh", "cad", "script", "image"]


@dataclass(frozen=True)
class ExportFormat:
    """One output format: its file name, what kind of file it is and who writes it."""

    name: str
    suffix: str
    """appended to the base name: ``".glb"``, ``"_blender.py"``"""
    kind: Kind
    extra: str
    """the pip extra whose packages the writer needs"""
    module: str
    function: str
    summary: str

    def filename(self, basename: str) -> str:
        """``model`` → ``model.glb``."""
        return f"{basename}{self.suffix}"

    def writer(self) -> Writer:
        """The writing function ``(model, path) -> path`` (imports its module now)."""
        write: Writer = getattr(importlib.import_module(self.module), self.function)
        return write


_HERE = __name__
FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("glb", ".glb", "mesh", "recon3d", f"{_HERE}.mesh", "write_glb",
                     "glTF binary: one coloured node per part, metres, +Y up"),
        ExportFormat("stl", ".stl", "mesh", "recon3d", f"{_HERE}.mesh", "write_stl",
                     "binary STL of the watertight solid, mm"),
        ExportFormat("obj", ".obj", "mesh", "recon3d", f"{_HERE}.mesh", "write_obj",
                     "OBJ + MTL, one group and material per part, mm"),
        ExportFormat("ply", ".ply", "mesh", "recon3d", f"{_HERE}.mesh", "write_ply",
                     "binary PLY with per-face colours, mm"),
        ExportFormat("step", ".step", "cad", "cad", f"{_HERE}.step", "write_step",
                     "exact B-rep (build123d / OpenCascade), mm"),
        ExportFormat("scad", ".scad", "script", "recon3d", f"{_HERE}.scad", "write_scad",
                     "OpenSCAD source that rebuilds the model, mm"),
        ExportFormat("py", "_blender.py", "script", "recon3d", f"{_HERE}.blender", "write_blender",
                     "Blender script (primitives + boolean modifiers), mm"),
        ExportFormat("png", ".png", "image", "recon3d", f"{_HERE}.preview", "render_preview",
                     "2×2 preview: isometric, front, side, top"),
    )
}
"""format name → :class:`ExportFormat`, in the order files are written."""

MESH_FORMATS: tuple[str, ...] = tuple(name for name, f in FORMATS.items() if f.kind == "mesh")
DEFAULT_FORMATS: tuple[str, ...] = ("glb", "stl", "scad", "png")

@dataclass(frozen=True)
class ExportedFile:
    """One written file and how long it took."""

    format: str
    path: Path
    bytes: int
    seconds: float


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """``"glb,stl"`` or an iterable → validated, de-duplicated list (``"all"`` = every format)."""
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    items = [f for f in items if f]
    if "all" in items:
        return list(FORMATS)
    unknown = [f for f in items if f not in FORMATS]
    if unknown:
        raise RequestError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def export(
    model: CompiledModel,
    outdir: str | Path,
    formats: str | Iterable[str] = DEFAULT_FORMATS,
    *,
    basename: str = "model",
) -> dict[str, Path]:
    """Write ``formats`` of ``model`` into ``outdir`` (created if missing); format → path."""
    return {f.format: f.path for f in export_files(model, outdir, formats, basename=basename)}


def export_files(
    model: CompiledModel,
    outdir: str | Path,
    formats: str | Iterable[str] = DEFAULT_FORMATS,
    *,
    basename: str = "model",
    on_done: Callable[[ExportedFile], None] | None = None,
) -> list[ExportedFile]:
    """Like :func:`export` but reports size and time per file (``on_done`` is called after each)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for fmt in parse_formats(formats):
        start = time.perf_counter()
        spec = FORMATS[fmt]
        path = spec.writer()(model, out / spec.filename(basename))
        item = ExportedFile(fmt, path, path.stat().st_size, time.perf_counter() - start)
        done.append(item)
        if on_done:
            on_done(item)
    return done


__all__ = ["DEFAULT_FORMATS", "FORMATS", "MESH_FORMATS", "ExportFormat", "ExportedFile", "Writer", "export",
           "export_files", "parse_formats"]
