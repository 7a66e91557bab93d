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
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
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
        _build_and_report(loaded.model_dump(mode="json", exclude_none=True), out, formats, segments, basename)
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
    model: Annotated[
        str | None,
        typer.Option("--model", help="let this model write the spec (schema-constrained); omit: the rule parser"),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="most tokens for the spec (with --model)")] = 2048,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda (with --model)")] = "auto",
) -> None:
    """Draft a spec from a plain description (English or Chinese); build it when -o is given."""
    from vlserve.recon3d.exporters import parse_formats
    from vlserve.recon3d.text import parse_description

    try:
        if model is not None:
            from vlserve.cli.recon3d_photos import run_from_text_model

            if out is None:
                raise RequestError("--model needs -o/--out: the model's spec is built into that folder")
            run_from_text_model(description, model=model, out=out, max_tokens=max_tokens, device=device,
                                console=console, formats=parse_formats(formats))
            return
        draft = parse_description(description)
        spec_json = json.dumps(
            draft.spec.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False
        )
        table = Table(
            title=f"assumptions for the {draft.template} draft", show_header=False, title_justify="left"
        )
        for line in draft.assumptions:
            table.add_row("•", escape(line))
        numbers = Table(title="numbers in the description", title_justify="left")
        numbers.add_column("as written")
        numbers.add_column("used for")
        for number in draft.numbers:
            numbers.add_row(escape(number.text), escape(", ".join(number.uses) or f"ignored: {number.ignored}"))
        if out is None:
            typer.echo(spec_json)
            err_console.print(numbers)
            err_console.print(table)
            return
        out.mkdir(parents=True, exist_ok=True)
        (out / "spec.json").write_text(spec_json + "\n", encoding="utf-8")
        console.print(numbers)
        console.print(table)
        _build_and_report(draft.spec.model_dump(mode="json", exclude_none=True), out, formats, segments, basename)
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
    formats: Annotated[str, typer.Option("--formats", "-f", help="files to write, or all")] = "all",
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    marker_size: Annotated[float | None, typer.Option(
        "--refine-marker-mm", "--marker-size", help="refine: side of the printed ArUco marker beside the object, "
        "mm (then SfM on the photos fits the spec: OUT/refined.*)")] = None,
    known_dimension: Annotated[str | None, typer.Option(
        "--refine-known", "--known-dimension", help="refine with one true dimension PARAM=VALUE "
        "(e.g. f.diameter=80mm) instead of a marker")] = None,
    charuco: Annotated[str | None, typer.Option(
        "--refine-charuco", "--charuco", help="refine with a printed ChArUco board beside the object: "
        "COLSxROWS:SQUARE_MM:MARKER_MM[:DICTIONARY], e.g. 5x7:30:22:DICT_5X5_100")] = None,
) -> None:
    """Reconstruct an object from photos: Qwen3-VL fills the spec, which is compiled to every format."""
    from vlserve.cli.recon3d_photos import refine_from_images, run_from_images
    from vlserve.recon3d.exporters import parse_formats
    from vlserve.recon3d.refine.options import scale_source

    if not 1 <= len(images) <= 12:
        raise _fail(RequestError(f"give 1 to 12 photos, got {len(images)}"))
    refine = marker_size is not None or known_dimension is not None or charuco is not None
    board = None
    try:
        if refine:  # a typo in the scale fails before the model loads
            _, _, board = scale_source(marker_size, known_dimension, charuco)
        settings = _settings()
        wanted = parse_formats(formats)
        answer = run_from_images(images, labels=[x.strip() for x in labels.split(",")] if labels else [],
                                 model=model, out=out, note=note, max_tokens=max_tokens, device=device,
                                 console=console, formats=wanted, temperature=temperature, seed=seed,
                                 settings=settings)
        if refine:
            refine_from_images(answer, images, out, wanted, marker_size_mm=marker_size,
                               known_dimension=known_dimension, settings=settings, console=console,
                               charuco=board)
    except VlserveError as err:
        raise _fail(err) from None
    except OSError as err:
        raise _fail(RequestError(f"cannot read or write a file: {err}")) from None


def _settings() -> Any:
    from vlserve.config import Settings

    return Settings.load()


def _build_and_report(spec: Any, out: Path, formats: str, segments: int, basename: str, *,
                      repair: bool = False) -> None:
    from vlserve.recon3d.exporters import parse_formats
    from vlserve.tasks.multiview_3d.building import build

    wanted = parse_formats(formats)
    cfg = _settings().recon3d.model_copy(update={"segments": segments})
    with console.status(f"compiling and writing {', '.join(wanted)}"):
        built = build(spec, out, wanted, cfg, basename=basename, repair=repair)
    _print_report(built)


def _print_report(built: Any) -> None:
    summary, files = built.summary, [(f, p) for f, p in built.files.items() if f != "spec"]
    folder = files[0][1].parent if files else ""
    table = Table(title=f"{summary['name']}: {len(files)} file(s) in {folder}", title_justify="left")
    for col, justify in (("format", "left"), ("file", "left"), ("size", "right"), ("time", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for fmt, path in files:
        size, seconds = built.sizes.get(fmt, (path.stat().st_size, 0.0))
        table.add_row(fmt, path.name, _size(size), f"{seconds * 1000:.0f} ms")
    console.print(table)
    ext, volume = summary["extents_mm"], summary["volume_mm3"]
    written = summary.get("written", {}).get("stl", {}).get("watertight")
    tight = "[green]yes[/]" if summary["watertight"] else "[red]no[/]"
    if written is not None:
        tight += "; as written to STL: " + ("[green]yes[/]" if written else "[red]no[/]")
    facts = Table(show_header=False, box=None)
    facts.add_row("volume", f"{volume:,.1f} mm³ ({volume / 1000:,.3f} cm³)")
    facts.add_row("size", f"{ext[0]:.4g} × {ext[1]:.4g} × {ext[2]:.4g} mm")
    facts.add_row("watertight", tight)
    facts.add_row("triangles", f"{summary['triangles']:,}  (bodies {summary['bodies']}, genus {summary['genus']})")
    facts.add_row("compile", f"{summary['compile_seconds'] * 1000:.0f} ms")
    console.print(facts)
    for warning in built.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


# photos → refined spec (SfM + fit) lives in its own module
from vlserve.cli.refine import refine as _refine  # noqa: E402

app.command("refine")(_refine)


if __name__ == "__main__":
    app()
