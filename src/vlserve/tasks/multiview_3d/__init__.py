"""multiview_3d: photos of one object → a schema-constrained object spec → CAD and mesh files.

The task owns everything about the model: the prompts (:mod:`.prompts`), the photo checks
(:mod:`.photos`) and reading the model's answer. Geometry is :mod:`vlserve.recon3d`'s job.
"""

from __future__ import annotations

import copy
from typing import Any

from vlserve.config import Recon3D, Settings
from vlserve.errors import EngineError, RequestError
from vlserve.recon3d import spec_json_schema
from vlserve.recon3d.budget import SpecTooLargeError
from vlserve.recon3d.errors import SpecError
from vlserve.recon3d.exporters import parse_formats
from vlserve.schemas import InferOptions
from vlserve.tasks.base import InputRules, Task, TaskInput
from vlserve.tasks.multiview_3d.answer import MIN_TOKENS_HINT, read_answer
from vlserve.tasks.multiview_3d.building import build
from vlserve.tasks.multiview_3d.photos import check_photos
from vlserve.tasks.multiview_3d.prompts import INSTRUCTION, SYSTEM_PROMPT, instruction

#: Photos the model reads: its prompt's budget. A job that refines (options.refine) may send more
#: for structure-from-motion, which measures better from more views; the model reads this many of
#: them, evenly spaced around the object.
MODEL_VIEWS = 12


class Multiview3D(Task):
    name = "multiview_3d"
    summary = (f"Reconstruct an object from 1–{MODEL_VIEWS} photos (optional view labels) into a schema-valid "
               "object spec, compiled to GLB, STL, OBJ, PLY, OpenSCAD, a Blender script and a PNG preview "
               "(STEP on request: options.formats).")
    rules = InputRules(images=(1, MODEL_VIEWS))
    lane = "batch"
    system_prompt = SYSTEM_PROMPT
    default_instruction = INSTRUCTION
    defaults = {"max_tokens": 2048, "temperature": 0.0}

    def schema(self) -> dict[str, Any]:
        # The compact schema (no titles or descriptions) constrains the same documents.
        return spec_json_schema(compact=True)

    def configure(self, options: InferOptions, settings: Settings) -> Task:
        super().configure(options, settings)
        if options.refine is None:
            return self
        refining = copy.copy(self)  # up to recon3d.refine.max_photos photos (and limits.max_images)
        refining.rules = InputRules(images=(1, max(MODEL_VIEWS, settings.recon3d.refine.max_photos)))
        return refining

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "options": {
            "formats": "files to write (default recon3d.default_formats; step on request)",
            "refine": f"jobs only (POST /jobs; /infer answers 4000): fit the spec's dimensions to the photos by "
                      f"structure-from-motion, scaled by a printed ArUco marker, a ChArUco board or one known "
                      f"dimension; up to recon3d.refine.max_photos photos, of which the model reads {MODEL_VIEWS}"}}

    def prepare(self, inp: TaskInput) -> list[str]:
        formats(inp)  # an unknown format is refused before the model runs
        warnings = []
        count = len(inp.images)
        if count > MODEL_VIEWS:  # a refining job: every photo is measured, the model reads a spread of them
            keep = [round(i * count / MODEL_VIEWS) for i in range(MODEL_VIEWS)]
            inp.images = [inp.images[i] for i in keep]
            inp.labels = [inp.labels[i] if i < len(inp.labels) else "" for i in keep] if inp.labels else inp.labels
            warnings.append(f"the model read {MODEL_VIEWS} of the {count} photos (views "
                            f"{', '.join(str(i + 1) for i in keep)}); refinement measures all {count}")
        checked = check_photos(inp.images, inp.labels)
        inp.images = checked.images
        return [*warnings, *checked.warnings]

    def instruction(self, inp: TaskInput) -> str:
        return instruction(inp.text)

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        if inp.artifacts_dir is None:
            raise EngineError("multiview_3d needs an artefact directory (settings.recon3d.artifacts_dir)")
        read = read_answer(text)
        try:
            built = build(read.document, inp.artifacts_dir, formats(inp), inp.recon3d or Recon3D())
        except SpecError as err:
            if not read.completed or isinstance(err, SpecTooLargeError):
                raise
            raise RequestError(
                f"the model's answer was cut off at max_tokens before it described a buildable object "
                f"({err.message}); raise max_tokens (at least {MIN_TOKENS_HINT}) or ask for a simpler object",
                min_max_tokens=MIN_TOKENS_HINT,
            ) from err
        warnings = list(built.warnings)
        if read.completed:
            warnings.insert(0, "the model's answer was cut off at max_tokens: the object is built from the parts "
                               "it finished (raise max_tokens for the rest)")
        return {
            "spec": built.spec,
            "description": built.spec.get("description", ""),
            "files": {fmt: inp.artifacts_url + path.name for fmt, path in built.files.items()},
            "summary": built.summary,
            "warnings": warnings,
        }


def formats(inp: TaskInput) -> list[str]:
    """The files to write: the request's ``options.formats`` or ``recon3d.default_formats``."""
    cfg = inp.recon3d or Recon3D()
    return parse_formats(inp.formats if inp.formats else cfg.default_formats)


__all__ = ["Multiview3D", "formats"]
