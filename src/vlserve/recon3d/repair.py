"""Photos of one object from several views → an object spec → CAD and mesh files.

The model is walked through the views, the parts, their dimensions and only then the spec, and its
answer is constrained to the spec's JSON Schema, so it always parses. A schema-valid spec can
still describe impossible geometry (a first part that subtracts, a self-crossing outline); such
parts are dropped one at a time with a warning naming them, so the user always gets the object
that the rest of the spec describes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vlserve.recon3d.errors import GeometryError, SpecError
from vlserve.recon3d.spec import ObjectSpec
from vlserve.recon3d.validation import load_spec

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

MAX_SIDE = 1024  # seed 000: keep views within 1024×1024
BLUR_THRESHOLD = 60.0  # variance of the Laplacian below this reads as blurred
OVEREXPOSED_FRACTION = 0.25  # share of near-white pixels above this reads as glare/over-exposure
MAX_REPAIRS = 8
_PART_INDEX = re.compile(r"^parts\[(\d+)\]")

SYSTEM_PROMPT = (
    "You are a mechanical designer reconstructing a physical object from photographs taken from "
    "different viewpoints. You describe the object's 3D structure so that CAD software can rebuild "
    "it: solid primitives, templates for known families (flange, impeller, gear, bracket, "
    "enclosure, table, chair, shelf), boolean operations for holes and cut-outs, and patterns for "
    "repeated features. Use symmetry and common design conventions to complete hidden regions."
)

INSTRUCTION = (
    "Reconstruct the object in these photos.\n"
    "1. Views: decide which direction each photo looks from and which features appear in several views.\n"
    "2. Parts: list the object's main bodies and features (holes, bores, ribs, legs, blades).\n"
    "3. Dimensions: estimate sizes from proportions and any known reference; state the units.\n"
    "4. Spec: write the object spec as JSON following the schema: the first part a union body, "
    "holes as subtract parts, repeated features with a pattern, and a one-sentence description."
)


@dataclass
class PhotoCheck:
    images: list[Image.Image]
    warnings: list[str] = field(default_factory=list)


def check_photos(images: list[Image.Image], labels: list[str] | None = None) -> PhotoCheck:
    """Downscale views above 1024 px and warn about blurred or over-exposed ones."""
    out, warnings = [], []
    for i, image in enumerate(images):
        name = f"view {i + 1}" + (f" ({labels[i]})" if labels and i < len(labels) and labels[i] else "")
        if max(image.size) > MAX_SIDE:
            scale = MAX_SIDE / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
            warnings.append(f"{name} was downscaled to {image.width}x{image.height} (views are kept within "
                            f"{MAX_SIDE} px)")
        gray = np.asarray(image.convert("L"), dtype=np.float32)
        if min(gray.shape) >= 3 and _sharpness(gray) < BLUR_THRESHOLD:
            warnings.append(f"{name} looks blurred; a sharper photo gives better dimensions")
        if float((gray >= 250).mean()) > OVEREXPOSED_FRACTION:
            warnings.append(f"{name} looks over-exposed or has strong glare; avoid direct light on the object")
        out.append(image)
    return PhotoCheck(out, warnings)


def _sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low on blurred images."""
    lap = (gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1])
    return float(lap.var())


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
