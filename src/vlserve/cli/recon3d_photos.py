"""``vlserve recon3d from-images`` and ``from-text --model``: the model writes the spec, the task builds it.

Both load a local engine and run the multiview_3d task's own path (prompts, schema-constrained
decoding, answer reading, bounded build), with media prepared from ``config.Limits`` exactly as
the server prepares it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vlserve.config import Settings
from vlserve.runtime.protocol import GenerationRequest, Message, SamplingParams, TextDelta, TextPart

if TYPE_CHECKING:
    from vlserve.recon3d.refine.options import CharucoSpec


def _engine(model: str, device: str, settings: Settings, console: Console) -> Any:
    from vlserve.media import VisionSettings
    from vlserve.runtime.loading import resolve_checkpoint
    from vlserve.runtime.local import LocalEngine

    ckpt = resolve_checkpoint(model)
    vision = VisionSettings.from_limits(settings.limits, checkpoint=ckpt.path)
    with console.status(f"loading {model}"):
        return LocalEngine(ckpt.path, device=device, vision=vision, name=model), vision


def _generate(engine: Any, request: GenerationRequest, console: Console, what: str) -> str:
    text = ""
    with console.status(what) as status:
        for event in engine.iter_stream(request):
            if isinstance(event, TextDelta):
                text += event.text
                status.update(f"writing the object spec ({len(text)} characters)")
    return text


def run_from_images(images: list[Path], *, labels: list[str], model: str, out: Path, note: str,
                    max_tokens: int, device: str, console: Console, formats: list[str] | None = None,
                    temperature: float = 0.0, seed: int | None = None,
                    settings: Settings | None = None) -> dict[str, Any]:
    """Photos → spec (Qwen3-VL, schema-constrained) → files in ``out``; returns the task's answer."""
    from vlserve.media import load_image
    from vlserve.tasks import TaskInput, get_task

    settings = settings or Settings.load()
    task = get_task("multiview_3d")
    engine, vision = _engine(model, device, settings, console)
    inp = TaskInput(text=note, images=[load_image(p, vision) for p in images], labels=labels,
                    artifacts_dir=out, artifacts_url="", recon3d=settings.recon3d, formats=formats)
    warnings = task.prepare(inp)
    params = SamplingParams(**{**task.defaults, "max_tokens": max_tokens, "temperature": temperature,
                               "seed": seed}, json_schema=task.schema())
    text = _generate(engine, GenerationRequest(task.messages(inp), params), console, "reasoning about the views")
    with console.status("compiling and exporting"):
        answer: dict[str, Any] = task.answer(text, inp)
    answer["warnings"] = warnings + answer["warnings"]
    _report(answer, out, console)
    return answer


def run_from_text_model(description: str, *, model: str, out: Path, max_tokens: int, device: str,
                        console: Console, formats: list[str] | None = None,
                        settings: Settings | None = None) -> dict[str, Any]:
    """A description → spec written by the model under the spec's schema → files in ``out``."""
    from vlserve.tasks import TaskInput, get_task
    from vlserve.tasks.multiview_3d.prompts import text_messages

    settings = settings or Settings.load()
    task = get_task("multiview_3d")
    engine, _vision = _engine(model, device, settings, console)
    inp = TaskInput(text=description, artifacts_dir=out, artifacts_url="", recon3d=settings.recon3d,
                    formats=formats)
    system, user = text_messages(description)
    request = GenerationRequest([Message("system", system), Message("user", [TextPart(user)])],
                                SamplingParams(max_tokens=max_tokens, temperature=0.0, json_schema=task.schema()))
    text = _generate(engine, request, console, "designing the object")
    with console.status("compiling and exporting"):
        answer: dict[str, Any] = task.answer(text, inp)
    _report(answer, out, console)
    return answer


def refine_from_images(answer: dict[str, Any], images: list[Path], out: Path, formats: list[str], *,
                       marker_size_mm: float | None, known_dimension: str | None, settings: Settings,
                       console: Console, charuco: CharucoSpec | None = None) -> dict[str, Any]:
    """Fit ``answer``'s spec to the photos (the service's refinement: isolated worker, same limits
    as a job's) and write ``OUT/refined.*`` beside the model's files; ``result.json`` is rewritten
    with ``refined_spec``, ``refine_report`` and ``refined_files``. Not refined (too few photos
    registered, no marker, the time limit): a warning, and the model's own files stand."""
    import asyncio

    from vlserve.recon3d.refine.pipeline import format_report
    from vlserve.service.refine import file_names, refine_answer

    photos = [p.read_bytes() for p in images]
    with console.status(f"structure-from-motion on {len(images)} photos, then fitting the spec"):
        asyncio.run(refine_answer(settings, answer, photos, file_names(images), out, "", formats,
                                  marker_size_mm=marker_size_mm, known_dimension=known_dimension,
                                  charuco=charuco))
    report = answer["refine_report"]
    (out / "result.json").write_text(json.dumps(answer, indent=2, ensure_ascii=False))
    if report["refined"]:
        console.print(escape(format_report(report)), highlight=False)
        console.print(f"refined files in {out}: {', '.join(answer['refined_files'].values())}")
    else:
        console.print(f"[yellow]not refined:[/] {escape(report['reason'])}", highlight=False)
    return answer


def _report(answer: dict[str, Any], out: Path, console: Console) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(answer, indent=2, ensure_ascii=False))
    table = Table(title=f"{answer['spec'].get('name', 'object')}: files in {out}", title_justify="left")
    table.add_column("format")
    table.add_column("file")
    for fmt, name in answer["files"].items():
        table.add_row(fmt, name)
    console.print(table)
    summary = answer["summary"]
    written = summary.get("written", {}).get("stl", {}).get("watertight")
    tight = f"{summary['watertight']}" + (f" (as written to STL: {written})" if written is not None else "")
    console.print(f"volume {summary['volume_mm3']:,.1f} mm³, bodies {summary['bodies']}, watertight: {tight}")
    for warning in answer["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
