"""``vlserve recon3d refine``: measure the object in photos and fit a spec's dimensions to it.

    vlserve recon3d refine flange.json photos/*.jpg -o out/ --marker-size 50
    vlserve recon3d refine flange.json photos/*.jpg -o out/ --charuco 5x7:30:22:DICT_5X5_100
    vlserve recon3d refine flange.json photos/*.jpg -o out/ --known-dimension f.diameter=80

Writes ``OUT/spec.json`` (the refined spec), ``OUT/report.json`` and ``OUT/report.txt`` (each
dimension before/after, residuals, which photos registered) and the refined model's files.
Exit codes as for every recon3d command: 2 for what the input can fix (too few photos
registered, no marker or board found, an unknown dimension name, a board that cannot be), 1 for a
missing optional dependency.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.errors import RequestError, VlserveError
from vlserve.recon3d.refine.options import CHARUCO_SYNTAX, CharucoSpec, scale_source
from vlserve.recon3d.refine.pipeline import refine_options

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def refine(
    spec: Annotated[Path, typer.Argument(help="the coarse object spec (JSON), e.g. from from-images")],
    photos: Annotated[list[Path], typer.Argument(help="photos of the object from all around (8-64)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory (created if missing)")],
    marker_size: Annotated[
        float | None,
        typer.Option("--marker-size", help="side of the printed ArUco marker's black square, mm"),
    ] = None,
    known_dimension: Annotated[
        str | None,
        typer.Option("--known-dimension", help="one true dimension of the spec, PARAM=VALUE (e.g. f.diameter=80mm)"),
    ] = None,
    formats: Annotated[str, typer.Option("--formats", "-f", help="model files to write, comma-separated")] = "glb,stl",
    charuco: Annotated[
        str | None,
        typer.Option("--charuco", help=f"a printed ChArUco board beside the object: {CHARUCO_SYNTAX} "
                     "(squares across x down, square and marker sides in mm, OpenCV dictionary)"),
    ] = None,
) -> None:
    """Refine SPEC against PHOTOS: SfM points, metric scale, and a least-squares fit of its dimensions."""
    if sum(x is not None for x in (marker_size, known_dimension, charuco)) != 1:
        raise _fail(RequestError("give one source of scale: --marker-size MM, --charuco BOARD or "
                                 "--known-dimension PARAM=VALUE"))
    try:
        marker_size, known_dimension, board = scale_source(marker_size, known_dimension, charuco)
        refine_into(spec, photos, out, marker_size=marker_size, known_dimension=known_dimension, formats=formats,
                    charuco=board)
    except VlserveError as err:
        raise _fail(err) from None
    except OSError as err:
        raise _fail(RequestError(f"cannot read or write a file: {err}")) from None


def refine_into(
    spec: Any,
    photos: list[Path],
    out: Path,
    *,
    marker_size: float | None,
    known_dimension: str | None,
    formats: str = "glb,stl",
    charuco: CharucoSpec | None = None,
) -> dict[str, Any]:
    """Refine ``spec`` (path, dict or JSON) against ``photos`` and write spec, report and model
    files into ``out``; returns the report. Raises VlserveError (and OSError)."""
    from vlserve.config import Settings
    from vlserve.recon3d import compile_spec, export
    from vlserve.recon3d.refine.pipeline import format_report
    from vlserve.recon3d.refine.pipeline import refine as run_refine

    options = refine_options(Settings.load().recon3d.refine)
    with console.status(f"structure-from-motion on {len(photos)} photos, then fitting"):
        result = run_refine(spec, photos, marker_size_mm=marker_size, known_dimension=known_dimension, options=options,
                            charuco=charuco)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(result.spec, indent=2, ensure_ascii=False) + "\n")
    (out / "report.json").write_text(json.dumps(result.report, indent=2, ensure_ascii=False) + "\n")
    text = format_report(result.report)
    (out / "report.txt").write_text(text + "\n")
    console.print(escape(text), highlight=False)
    names = [f.strip() for f in formats.split(",") if f.strip()]
    if names:
        written = export(compile_spec(result.spec), out, names)
        console.print(f"wrote {out / 'spec.json'}, {', '.join(str(p) for p in written.values())}")
    return result.report


def _fail(err: VlserveError) -> typer.Exit:
    code = 2 if isinstance(err, RequestError) else 1
    err_console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False)
    return typer.Exit(code)
