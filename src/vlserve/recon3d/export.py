"""Write a :class:`CompiledModel` to files, in any of the formats of :data:`~.exporters.FORMATS`.

The GLB also carries the spec in its scene's ``extras``. It is a scene of per-part pieces of the
one CSG result (faces keep the part they came from), so its pieces together are exactly the
watertight solid of the other formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vlserve.errors import RequestError
from vlserve.recon3d.compiler import CompiledModel
from vlserve.recon3d.exporters import DEFAULT_FORMATS, FORMATS, MESH_FORMATS


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


__all__ = ["DEFAULT_FORMATS", "FORMATS", "MESH_FORMATS", "ExportedFile", "export", "export_files", "parse_formats"]
