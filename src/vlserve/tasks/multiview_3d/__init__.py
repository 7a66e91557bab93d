"""multiview_3d: photos of one object → a schema-constrained object spec → CAD and mesh files.

The task owns everything about the model: the prompts (:mod:`.prompts`), the photo checks
(:mod:`.photos`) and reading the model's answer. Geometry is :mod:`vlserve.recon3d`'s job.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from vlserve.errors import EngineError
from vlserve.recon3d import spec_json_schema
from vlserve.recon3d.exporters import FORMATS
from vlserve.recon3d.repair import reconstruct
from vlserve.tasks.base import InputRules, Task, TaskInput
from vlserve.tasks.multiview_3d.photos import check_photos
from vlserve.tasks.multiview_3d.prompts import INSTRUCTION, SYSTEM_PROMPT, instruction


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
        return instruction(inp.text)

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
    return importlib.util.find_spec("build123d") is not None


__all__ = ["Multiview3D"]
