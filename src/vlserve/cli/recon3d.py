"""``vlserve recon3d``: build a spec into files, print the schema, draft a spec from text.

    vlserve recon3d build flange.json -o out/ --formats glb,stl,step,png
    vlserve recon3d schema [--compact]
    vlserve recon3d from-text "一个直径80毫米、厚10毫米的法兰，六个8毫米螺栓孔" -o out/
    vlserve recon3d from-images front.jpg side.jpg top.jpg --labels front,side,top --model M -o out/

Exit codes: 0 ok, 2 invalid spec / description / option (message, no traceback), 1 anything
else the user can fix (a missing optional dependency).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from vlserve.errors import RequestError, VlserveError
from vlserve.recon3d.profiles import DEFAULT_SEGMENTS

app = typer.Typer(
    name="recon3d",
    help="Object specs → CAD and meshes (GLB, STL, OBJ, PLY, STEP, OpenSCAD, Blender, PNG).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

Formats = Annotated[
    str, typer.Option("--formats", "-f", help="comma-separated: glb,stl,obj,ply,step,scad,py,png or all")
]
Segments = Annotated[int, typer.Option("--segments", help="vertices per full circle", min=8, max=1024)]
Basename = Annotated[str, typer.Option("--name", help="base name of the written files")]
DEFAULT_FORMATS = "glb,stl,scad,png"


def _fail(err: VlserveError) -> typer.Exit:
    code = 2 if isinstance(err, RequestError) else 1
    err_console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False)
    return typer.Exit(code)


@app.command()
def build(
    spec: Annotated[Path, typer.Argument(help="the object spec (JSON)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory (created if missing)")],
    formats: Formats = DEFAULT_FORMATS,
    segments: Segments = DEFAULT_SEGMENTS,
    basename: Basename = "model",
) -> None:
    """Compile SPEC and write the requested formats into OUT."""
    from vlserve.recon3d.validation import load_spec

    try:
        loaded = load_spec(spec)
        _build_and_report(loaded, out, formats, segments, basename)
    except VlserveError as err:
        raise _fail(err) from None


@app.command()
def schema(
    compact: Annotated[
        bool, typer.Option("--compact", help="only validating keywords (for constrained decoding)")
    ] = False,
    indent: Annotated[int, typer.Option("--indent", help="0 for one line")] = 2,
) -> None:
    """Print the object spec's JSON Schema."""
    from vlserve.recon3d.schema import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(compact=compact), indent=indent or None, ensure_ascii=False))


@app.command("from-text")
def from_text(
    description: Annotated[
        str, typer.Argument(help='e.g. "five-blade impeller, diameter about 20 cm, hex bore"')
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="build into this directory (omit: print the draft only)"),
    ] = None,
    formats: Formats = DEFAULT_FORMATS,
    segments: Segments = DEFAULT_SEGMENTS,
    basename: Basename = "model",
) -> None:
    """Draft a spec from a plain description (English or Chinese); build it when -o is given."""
    from vlserve.recon3d.text import parse_description

    try:
        draft = parse_description(description)
        spec_json = json.dumps(
            draft.spec.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False
        )
        table = Table(
            title=f"assumptions for the {draft.template} draft", show_header=False, title_justify="left"
        )
        for line in draft.assumptions:
            table.add_row("•", escape(line))
        if out is None:
            typer.echo(spec_json)
            err_console.print(table)
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.json").write_text(spec_json + "\n", encoding="utf-8")
        console.print(table)
        _build_and_report(draft.spec, out, formats, segments, basename)
        console.print(f"draft spec written to [bold]{out / 'spec.json'}[/]")
    except VlserveError as err:
        raise _fail(err) from None


@app.command("from-images")
def from_images(
    images: Annotated[list[Path], typer.Argument(help="1–12 photos of the object from different views.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")],
    model: Annotated[str, typer.Option(help="tiny, tiny-moe, a checkpoint directory or a hub id")] = "tiny",
    labels: Annotated[str, typer.Option(help="comma-separated view labels, e.g. front,side,top")] = "",
    note: Annotated[str, typer.Option(help="what you know about the object (size, material, ...)")] = "",
    max_tokens: Annotated[int, typer.Option(help="most tokens for the spec")] = 2048,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Reconstruct an object from photos: Qwen3-VL fills the spec, which is compiled to every format."""
    from vlserve.cli.recon3d_photos import run_from_images

    if not 1 <= len(images) <= 12:
        raise _fail(RequestError(f"give 1 to 12 photos, got {len(images)}"))
    try:
        run_from_images(images, labels=[x.strip() for x in labels.split(",")] if labels else [], model=model,
                        out=out, note=note, max_tokens=max_tokens, device=device, console=console)
    except VlserveError as err:
        raise _fail(err) from None


def _build_and_report(spec: Any, out: Path, formats: str, segments: int, basename: str) -> None:
    from vlserve.recon3d.compiler import compile_spec
    from vlserve.recon3d.export import export_files, parse_formats

    wanted = parse_formats(formats)
    rows = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("compiling", total=len(wanted) + 1)
        model = compile_spec(spec, segments=segments)
        progress.advance(task)
        for fmt in wanted:
            progress.update(task, description=f"writing {fmt}")
            start = time.perf_counter()
            files = export_files(model, out, [fmt], basename=basename)
            rows.append((files[0], time.perf_counter() - start))
            progress.advance(task)
    _print_report(model, rows)


def _print_report(model: Any, rows: list[tuple[Any, float]]) -> None:
    ext = model.extents
    folder = rows[0][0].path.parent if rows else ""
    table = Table(title=f"{model.spec.name}: {len(rows)} file(s) in {folder}", title_justify="left")
    for col, justify in (("format", "left"), ("file", "left"), ("size", "right"), ("time", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for item, seconds in rows:
        table.add_row(item.format, item.path.name, _size(item.bytes), f"{seconds * 1000:.0f} ms")
    console.print(table)
    facts = Table(show_header=False, box=None)
    facts.add_row("volume", f"{model.volume:,.1f} mm³ ({model.volume / 1000:,.3f} cm³)")
    facts.add_row("size", f"{ext[0]:.4g} × {ext[1]:.4g} × {ext[2]:.4g} mm")
    facts.add_row("watertight", "[green]yes[/]" if model.watertight else "[red]no[/]")
    facts.add_row("triangles", f"{len(model.faces):,}  (bodies {model.bodies}, genus {model.genus})")
    facts.add_row("compile", f"{model.seconds * 1000:.0f} ms")
    console.print(facts)
    for warning in model.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


if __name__ == "__main__":
    app()
