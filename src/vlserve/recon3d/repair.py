"""A spec written by a model → a compiled, exported object, repairing what cannot be built.

A schema-valid spec can still describe impossible geometry (a first part that subtracts, a self-crossing outline); such
parts are dropped one at a time with a warning naming them, so the user always gets the object
that the rest of the spec describes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlserve.recon3d.errors import GeometryError, SpecError
from vlserve.recon3d.spec import ObjectSpec
from vlserve.recon3d.validation import load_spec

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

MAX_REPAIRS = 8
_PART_INDEX = re.compile(r"^parts\[(\d+)\]")

@dataclass
class Reconstruction:
    spec: ObjectSpec
    model: CompiledModel
    files: dict[str, Path]
    warnings: list[str]


def compile_with_repair(document: str | dict[str, Any], *,
                        segments: int = 96) -> tuple[ObjectSpec, CompiledModel, list[str]]:
    """Validate and compile the model's spec; impossible parts are repaired or dropped, with warnings.

    Repairs, in order of preference: a first part that cuts becomes the body (union); a part that
    cannot be built is dropped; a lone part that cannot be built becomes a box of its largest size.
    """
    from vlserve.recon3d.compiler import compile_spec

    doc: dict[str, Any] = json.loads(document) if isinstance(document, str) else dict(document)
    warnings: list[str] = []
    for _ in range(MAX_REPAIRS):
        try:
            spec = load_spec(doc)
            return spec, compile_spec(spec, segments=segments), warnings
        except SpecError as err:
            match = _PART_INDEX.match(err.path or err.message)
            parts = list(doc.get("parts") or [])
            if match is None or int(match.group(1)) >= len(parts):
                raise
            index = int(match.group(1))
            if err.path.endswith(".op") and index == 0 and parts[0].get("op", "union") != "union":
                warnings.append(f"{err.path}: made the first part a union (it had nothing to cut from)")
                parts[0] = {**parts[0], "op": "union"}
            elif len(parts) > 1:
                del parts[index]
                warnings.append(f"dropped {err.path}: {err.reason}")
            elif (box := _bounding_box(parts[0])) is not None:
                warnings.append(f"{err.path}: {err.reason}; replaced by a box of its largest dimension")
                parts[0] = box
            else:
                raise GeometryError.at(err.path, f"{err.reason}; the spec has no other part to build") from err
            doc = {**doc, "parts": parts}
    spec = load_spec(doc)
    return spec, compile_spec(spec, segments=segments), warnings


def _bounding_box(part: dict[str, Any]) -> dict[str, Any] | None:
    """A box part at ``part``'s place, as wide as its largest positive size value (None if none)."""
    size = part.get("size") if isinstance(part.get("size"), dict) else {}
    side = max((v for v in size.values() if isinstance(v, int | float) and v > 0), default=0.0)
    if side <= 0:
        return None
    keep = {k: part[k] for k in ("id", "position", "rotation", "material", "color") if k in part}
    return {**keep, "shape": "box", "op": "union", "size": {"x": side, "y": side, "z": side}}


def reconstruct(answer: str | dict[str, Any], outdir: Path, formats: list[str], *,
                segments: int = 96) -> Reconstruction:
    """The model's answer → a compiled, exported object."""
    from vlserve.recon3d.export import export

    spec, model, warnings = compile_with_repair(answer, segments=segments)
    files = export(model, outdir, formats, basename="model")
    (outdir / "spec.json").write_text(spec.model_dump_json(indent=2, exclude_none=True))
    files["spec"] = outdir / "spec.json"
    return Reconstruction(spec, model, files, warnings + list(model.warnings))
