from __future__ import annotations

from typing import Any

from vlserve.errors import EngineError
from vlserve.recon3d import spec_json_schema
from vlserve.recon3d.multiview import INSTRUCTION, SYSTEM_PROMPT, check_photos, reconstruct
from vlserve.tasks.base import InputRules, Task, TaskInput

FORMATS = ["glb", "stl", "obj", "ply", "step", "scad", "py", "png"]


class Multiview3D(Task):
    name = "multiview_3d"
    summary = ("Reconstruct an object from 1–12 photos (optional view labels) into a schema-valid object "
               "spec, compiled to GLB, STL, OBJ, PLY, STEP, OpenSCAD, a Blender script and a PNG preview.")
    rules = InputRules(images=(1, 12))
    lane = "batch"
    system_prompt = SYSTEM_PROMPT
    default_instruction = INSTRUCTION
    defaults = {"max_tokens": 2048, "temperature": 0.0}

    def schema(self) -> dict[str, Any]:
        # The compact schema (no titles or descriptions) constrains the same documents.
        return spec_json_schema(compact=True)

    def prepare(self, inp: TaskInput) -> list[str]:
        checked = check_photos(inp.images, inp.labels)
        inp.images = checked.images
        return checked.warnings

    def instruction(self, inp: TaskInput) -> str:
        extra = inp.text.strip()
        return f"{INSTRUCTION}\nNotes from the user: {extra}" if extra else INSTRUCTION

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        if inp.artifacts_dir is None:
            raise EngineError("multiview_3d needs an artefact directory (settings.recon3d.artifacts_dir)")
        formats = [f for f in FORMATS if f != "step" or _has_cad()]
        built = reconstruct(text, inp.artifacts_dir, formats)
        warnings = list(built.warnings)
        if "step" not in formats:
            warnings.append("STEP was skipped: install the 'cad' extra (build123d) for exact B-rep output")
        return {
            "spec": built.spec.model_dump(mode="json", exclude_none=True),
            "description": built.spec.description,
            "files": {fmt: inp.artifacts_url + path.name for fmt, path in built.files.items()},
            "summary": built.model.summary(),
            "warnings": warnings,
        }


def _has_cad() -> bool:
    import importlib.util

    return importlib.util.find_spec("build123d") is not None
