"""``vlserve recon3d from-images``: photos → object spec (Qwen3-VL, schema-constrained) → files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vlserve.runtime.protocol import GenerationRequest, SamplingParams, TextDelta


def run_from_images(images: list[Path], *, labels: list[str], model: str, out: Path, note: str,
                    max_tokens: int, device: str, console: Console) -> dict[str, Any]:
    from vlserve.media import VisionSettings, load_image
    from vlserve.runtime.local import LocalEngine
    from vlserve.tasks import TaskInput, get_task

    task = get_task("multiview_3d")
    settings = VisionSettings()
    inp = TaskInput(text=note, images=[load_image(p, settings) for p in images], labels=labels,
                    artifacts_dir=out, artifacts_url="")
    warnings = task.prepare(inp)
    with console.status(f"loading {model}"):
        engine = LocalEngine(model, device=device)
    params = SamplingParams(**{**task.defaults, "max_tokens": max_tokens}, json_schema=task.schema())
    request = GenerationRequest(task.messages(inp), params)
    text = ""
    with console.status("reasoning about the views") as status:
        for event in engine.iter_stream(request):
            if isinstance(event, TextDelta):
                text += event.text
                status.update(f"writing the object spec ({len(text)} characters)")
    with console.status("compiling and exporting"):
        answer: dict[str, Any] = task.answer(text, inp)
    answer["warnings"] = warnings + answer["warnings"]
    (out / "result.json").write_text(json.dumps(answer, indent=2, ensure_ascii=False))
    table = Table(title=f"{answer['spec'].get('name', 'object')}: files in {out}", title_justify="left")
    table.add_column("format")
    table.add_column("file")
    for fmt, name in answer["files"].items():
        table.add_row(fmt, name)
    console.print(table)
    console.print(f"volume {answer['summary']['volume_mm3']:,.1f} mm³, watertight: {answer['summary']['watertight']}")
    for warning in answer["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return answer
