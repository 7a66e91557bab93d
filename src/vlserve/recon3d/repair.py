"""A spec written by a model → a compiled, exported object, repairing what cannot be built.

A schema-valid spec can still describe impossible geometry (a first part that subtracts, a
self-crossing outline); such parts are dropped one at a time with a warning naming them, so the
user always gets the object that the rest of the spec describes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlserve.recon3d.budget import BuildLimits, SpecTooLargeError, check_budget, check_spec_size
from vlserve.recon3d.errors import GeometryError, SpecError
from vlserve.recon3d.plan import build_plan
from vlserve.recon3d.spec import ObjectSpec
from vlserve.recon3d.validation import load_spec

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

MAX_REPAIRS = 8
_PART_INDEX = re.compile(r"^parts\[(\d+)\]")
#: top-level fields a model may get wrong that have a safe value to fall back to
_FALLBACKS: dict[str, Any] = {"spec_version": "1.0", "name": "object", "category": "other", "units": "mm",
                              "description": ""}


def repair_document(doc: dict[str, Any], err: SpecError, warnings: list[str]) -> dict[str, Any]:
    """One repair step for ``err`` on ``doc`` (a new dict), or ``err`` raised again when none helps.

    Repairs, in order of preference: a wrong top-level field falls back to its default; a first
    part that cuts becomes the body (union); a part that cannot be built is dropped; a lone part
    that cannot be built becomes a box of its largest size. A spec over the build limits is never
    repaired (that is the caller's decision, not a defect of one part).
    """
    if isinstance(err, SpecTooLargeError):
        raise err
    field_name = (err.path or "").split(".")[0].split("[")[0]
    if field_name in _FALLBACKS and doc.get(field_name) != _FALLBACKS[field_name]:
        warnings.append(f"{err.path}: {err.reason}; used {_FALLBACKS[field_name]!r} instead")
        return {**doc, field_name: _FALLBACKS[field_name]}
    unknown = [k for k in doc if k not in (*_FALLBACKS, "parts")]
    if unknown and err.reason == "unknown field":
        warnings.append(f"ignored unknown field(s) {', '.join(map(repr, unknown))}")
        return {k: v for k, v in doc.items() if k not in unknown}
    match = _PART_INDEX.match(err.path or err.message)
    parts = list(doc.get("parts") or []) if isinstance(doc.get("parts"), list) else []
    if match is None or int(match.group(1)) >= len(parts):
        raise err
    index = int(match.group(1))
    if err.path.endswith(".op") and index == 0 and isinstance(parts[0], dict) and parts[0].get("op") != "union":
        warnings.append(f"{err.path}: made the first part a union (it had nothing to cut from)")
        parts[0] = {**parts[0], "op": "union"}
    elif len(parts) > 1:
        del parts[index]
        warnings.append(f"dropped {err.path}: {err.reason}")
    elif isinstance(parts[0], dict) and (box := _bounding_box(parts[0])) is not None:
        warnings.append(f"{err.path}: {err.reason}; replaced by the {box['shape']} around it")
        parts[0] = box
    else:
        raise GeometryError.at(err.path, f"{err.reason}; the spec has no other part to build") from err
    return {**doc, "parts": parts}


def as_document(document: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """JSON text or a dict → a dict (a :class:`SpecError` when it is not a JSON object)."""
    if isinstance(document, dict):
        return dict(document)
    try:
        data = json.loads(document)
    except (ValueError, RecursionError) as err:
        raise SpecError(f"the spec is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise SpecError("the spec must be a JSON object")
    return data


def validate_with_repair(document: str | bytes | dict[str, Any], *,
                         limits: BuildLimits | None = None) -> tuple[ObjectSpec, list[str]]:
    """Validate (repairing what the schema cannot express) and check the build limits; no CSG runs.

    This is the cheap first half of :func:`compile_with_repair`: a caller can refuse a spec up
    front, before handing it to a process that compiles it.
    """
    doc = as_document(document)
    warnings: list[str] = []
    for _ in range(MAX_REPAIRS + 1):
        try:
            spec = load_spec(doc)
            if limits is not None:
                check_spec_size(spec, limits)  # before the plan builds a matrix per copy
                check_budget(build_plan(spec), limits)
            return spec, warnings
        except SpecError as err:
            doc = repair_document(doc, err, warnings)
    raise SpecError(f"the spec needed more than {MAX_REPAIRS} repairs: {'; '.join(warnings[-3:])}")


@dataclass
class Reconstruction:
    spec: ObjectSpec
    model: CompiledModel
    files: dict[str, Path]
    warnings: list[str]


def compile_with_repair(document: str | bytes | dict[str, Any], *, segments: int = 96,
                        limits: BuildLimits | None = None) -> tuple[ObjectSpec, CompiledModel, list[str]]:
    """Validate and compile the model's spec; impossible parts are repaired or dropped, with warnings.

    See :func:`repair_document` for the repairs. With ``limits`` a spec that expands past them is
    refused (:class:`~.budget.SpecTooLargeError`, 4000) before any CSG runs.
    """
    from vlserve.recon3d.compiler import compile_spec

    doc = as_document(document)
    warnings: list[str] = []
    for _ in range(MAX_REPAIRS + 1):
        try:
            spec = load_spec(doc)
            return spec, compile_spec(spec, segments=segments, limits=limits), warnings
        except SpecError as err:
            doc = repair_document(doc, err, warnings)
    raise SpecError(f"the spec needed more than {MAX_REPAIRS} repairs: {'; '.join(warnings[-3:])}")


def _bounding_box(part: dict[str, Any]) -> dict[str, Any] | None:
    """A simple part at ``part``'s place and of its size (None if it has no usable size).

    A revolve whose profile cannot be built becomes the cylinder around the profile, an
    extrusion the box around its polygon, anything else a cube of its largest size value.
    """
    raw_size = part.get("size")
    size: dict[str, Any] = raw_size if isinstance(raw_size, dict) else {}
    keep: dict[str, Any] = {k: part[k] for k in ("id", "position", "rotation", "material", "color") if k in part}
    points = _points(size.get("profile") if part.get("shape") == "revolve" else size.get("polygon"))
    if points is not None and part.get("shape") == "revolve":
        radius, height = max(abs(r) for r, _z in points), max(z for _r, z in points) - min(z for _r, z in points)
        if radius > 0 and height > 0:
            return {**keep, "shape": "cylinder", "op": "union", "size": {"diameter": 2 * radius, "height": height}}
    extrusion = size.get("height")
    if points is not None and isinstance(extrusion, int | float) and extrusion > 0:
        dx = max(x for x, _y in points) - min(x for x, _y in points)
        dy = max(y for _x, y in points) - min(y for _x, y in points)
        if dx > 0 and dy > 0:
            return {**keep, "shape": "box", "op": "union", "size": {"x": dx, "y": dy, "z": extrusion}}
    side = max((v for v in size.values() if isinstance(v, int | float) and v > 0), default=0.0)
    if side <= 0:
        return None
    return {**keep, "shape": "box", "op": "union", "size": {"x": side, "y": side, "z": side}}


def _points(value: Any) -> list[tuple[float, float]] | None:
    if not isinstance(value, list):
        return None
    points = [(float(p[0]), float(p[1])) for p in value
              if isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(c, int | float) for c in p)]
    return points if len(points) >= 2 else None


def reconstruct(answer: str | dict[str, Any], outdir: Path, formats: list[str], *,
                segments: int = 96, limits: BuildLimits | None = None) -> Reconstruction:
    """The model's answer → a compiled, exported object (in this process: no time limit)."""
    from vlserve.recon3d.exporters import export

    spec, model, warnings = compile_with_repair(answer, segments=segments, limits=limits)
    files = export(model, outdir, formats, basename="model")
    (outdir / "spec.json").write_text(spec.model_dump_json(indent=2, exclude_none=True))
    files["spec"] = outdir / "spec.json"
    return Reconstruction(spec, model, files, warnings + list(model.warnings))
