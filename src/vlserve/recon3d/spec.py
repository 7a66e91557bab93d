"""The object spec, version 1.0: pydantic models that are the source of truth for its JSON Schema.

An :class:`ObjectSpec` is an ordered list of parts. Each part is either a **primitive**
(``shape`` = box, cylinder, cone, sphere, torus, prism, extrude, revolve, with a ``size``) or a
**template** (``shape`` = ``"template"``, ``template`` = flange, impeller, ..., with ``params``)
that expands into primitives. Parts are combined in order: part 0 starts the solid, then each
part is unioned, subtracted or intersected with the solid built so far (``op``).

Coordinates and conventions (all lengths in the spec's ``units``; the compiler works in mm):

* ``position`` is where the part's local origin goes. Every primitive is centred on its local
  origin (its bounding box centre), except ``extrude`` (the polygon's own x/y coordinates, centred
  in z) and ``revolve`` (the profile's own r/z coordinates around the local z axis).
* ``rotation`` = [rx, ry, rz] in degrees, **extrinsic XYZ**: rotate about the world x axis by rx,
  then about world y by ry, then about world z by rz (matrix ``Rz @ Ry @ Rx``; the same as
  OpenSCAD's ``rotate([rx, ry, rz])`` and Blender's ``XYZ`` Euler mode). Rotation is about the
  local origin, applied before the translation to ``position``.
* Cylinders, cones, prisms, extrusions and the torus's axis run along local z. A prism has a flat
  facing +x.
* ``pattern`` repeats the placed part: ``circular`` puts ``count`` copies on a circle of ``radius``
  around an axis through ``position`` (copy i offset along the reference direction — +x for
  axis z, +y for axis x, +z for axis y — then turned by ``start_angle + i·360/count``);
  ``linear`` offsets copy i by ``i·step``.
* ``mirror`` lists world planes through the origin; each adds the mirrored copy of everything so
  far (two planes → four copies).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from vlserve.recon3d.params import (
    MAX_LENGTH,
    BracketParams,
    ChairParams,
    EnclosureBoxParams,
    FlangeParams,
    ImpellerParams,
    ShelfParams,
    SpurGearParams,
    TableParams,
)

SPEC_VERSION: Literal["1.0"] = "1.0"
MAX_PARTS = 128
MAX_POINTS = 256

Units = Literal["mm", "cm", "m", "in"]
Op = Literal["union", "subtract", "intersect"]
MirrorPlane = Literal["xy", "yz", "xz"]
Axis = Literal["x", "y", "z"]

#: millimetres per spec unit
MM_PER_UNIT: dict[str, float] = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "in": 25.4}

Length = Annotated[float, Field(gt=0, le=MAX_LENGTH)]
NonNegLength = Annotated[float, Field(ge=0, le=MAX_LENGTH)]
Coord = Annotated[float, Field(ge=-MAX_LENGTH, le=MAX_LENGTH)]
Vec3 = Annotated[list[Coord], Field(min_length=3, max_length=3)]
Point2 = Annotated[list[Coord], Field(min_length=2, max_length=2)]
Angle = Annotated[float, Field(ge=-3600, le=3600)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- sizes of the primitives ------------------------------------------------------------------


class BoxSize(_Model):
    x: Length
    y: Length
    z: Length


class CylinderSize(_Model):
    diameter: Length
    height: Length


class ConeSize(_Model):
    bottom_diameter: NonNegLength
    top_diameter: NonNegLength
    height: Length

    @field_validator("top_diameter")
    @classmethod
    def _not_both_zero(cls, value: float, info: ValidationInfo) -> float:
        if value == 0 and info.data.get("bottom_diameter") == 0:
            raise ValueError("bottom_diameter and top_diameter cannot both be 0")
        return value


class SphereSize(_Model):
    diameter: Length


class TorusSize(_Model):
    major_diameter: Length = Field(description="diameter of the tube's centre circle")
    minor_diameter: Length = Field(description="diameter of the tube")

    @field_validator("minor_diameter")
    @classmethod
    def _tube_fits(cls, value: float, info: ValidationInfo) -> float:
        major = info.data.get("major_diameter")
        if major is not None and value >= major:
            raise ValueError("must be < major_diameter (the tube would cross the axis)")
        return value


class PrismSize(_Model):
    sides: int = Field(ge=3, le=64)
    across_flats: Length = Field(description="distance between opposite flats (2 × apothem)")
    height: Length


class ExtrudeSize(_Model):
    polygon: list[Point2] = Field(
        min_length=3, max_length=MAX_POINTS, description="simple polygon [[x, y], ...] in the local xy plane"
    )
    height: Length


#: a profile point [r, z]: r >= 0 is part of the schema (prefixItems), so a constrained decoder
#: cannot write a negative radius in the first place
ProfilePoint = tuple[Annotated[float, Field(ge=0, le=MAX_LENGTH)], Coord]


class RevolveSize(_Model):
    profile: list[ProfilePoint] = Field(
        min_length=3,
        max_length=MAX_POINTS,
        description="closed profile [[r, z], ...] revolved 360° about the local z axis (r >= 0)",
    )


# --- placement -------------------------------------------------------------------------------


class CircularPattern(_Model):
    kind: Literal["circular"]
    count: int = Field(ge=1, le=360)
    radius: NonNegLength = 0.0
    axis: Axis = "z"
    start_angle: Angle = 0.0


class LinearPattern(_Model):
    kind: Literal["linear"]
    count: int = Field(ge=1, le=1000)
    step: Vec3


Pattern = Annotated[CircularPattern | LinearPattern, Field(discriminator="kind")]


class PartBase(_Model):
    """Fields shared by every part: identity, placement, boolean op, appearance."""

    id: str = Field(min_length=1, max_length=64)
    position: Vec3 = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    rotation: Vec3 = Field(
        default_factory=lambda: [0.0, 0.0, 0.0], description="degrees, extrinsic XYZ about the part origin"
    )
    op: Op = Field(default="union", description="how the part combines with the solid built so far")
    pattern: Pattern | None = None
    mirror: list[MirrorPlane] = Field(default_factory=list, max_length=3)
    material: str | None = Field(default=None, max_length=48)
    color: str | None = Field(default=None, max_length=32, description="colour name or #rrggbb")
    confidence: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = Field(
        default=None, max_length=32, description="optional field name → confidence 0..1"
    )

    @field_validator("mirror", mode="before")
    @classmethod
    def _one_plane_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class BoxPart(PartBase):
    shape: Literal["box"]
    size: BoxSize


class CylinderPart(PartBase):
    shape: Literal["cylinder"]
    size: CylinderSize


class ConePart(PartBase):
    shape: Literal["cone"]
    size: ConeSize


class SpherePart(PartBase):
    shape: Literal["sphere"]
    size: SphereSize


class TorusPart(PartBase):
    shape: Literal["torus"]
    size: TorusSize


class PrismPart(PartBase):
    shape: Literal["prism"]
    size: PrismSize


class ExtrudePart(PartBase):
    shape: Literal["extrude"]
    size: ExtrudeSize


class RevolvePart(PartBase):
    shape: Literal["revolve"]
    size: RevolveSize


class TemplateBase(PartBase):
    """A part that expands a parametric family; subclasses pin ``template`` and type ``params``."""

    shape: Literal["template"]
    template: str
    params: BaseModel


class FlangePart(TemplateBase):
    template: Literal["flange"]
    params: FlangeParams = Field(default_factory=lambda: FlangeParams())


class ImpellerPart(TemplateBase):
    template: Literal["impeller"]
    params: ImpellerParams = Field(default_factory=lambda: ImpellerParams())


class SpurGearPart(TemplateBase):
    template: Literal["spur_gear"]
    params: SpurGearParams = Field(default_factory=lambda: SpurGearParams())


class BracketPart(TemplateBase):
    template: Literal["bracket"]
    params: BracketParams = Field(default_factory=lambda: BracketParams())


class EnclosureBoxPart(TemplateBase):
    template: Literal["enclosure_box"]
    params: EnclosureBoxParams = Field(default_factory=lambda: EnclosureBoxParams())


class TablePart(TemplateBase):
    template: Literal["table"]
    params: TableParams = Field(default_factory=lambda: TableParams())


class ChairPart(TemplateBase):
    template: Literal["chair"]
    params: ChairParams = Field(default_factory=lambda: ChairParams())


class ShelfPart(TemplateBase):
    template: Literal["shelf"]
    params: ShelfParams = Field(default_factory=lambda: ShelfParams())


PrimitivePart = (
    BoxPart | CylinderPart | ConePart | SpherePart | TorusPart | PrismPart | ExtrudePart | RevolvePart
)
TemplatePart = (
    FlangePart
    | ImpellerPart
    | SpurGearPart
    | BracketPart
    | EnclosureBoxPart
    | TablePart
    | ChairPart
    | ShelfPart
)
Part = Annotated[
    BoxPart
    | CylinderPart
    | ConePart
    | SpherePart
    | TorusPart
    | PrismPart
    | ExtrudePart
    | RevolvePart
    | Annotated[TemplatePart, Field(discriminator="template")],
    Field(discriminator="shape"),
]

PRIMITIVE_SHAPES: tuple[str, ...] = (
    "box",
    "cylinder",
    "cone",
    "sphere",
    "torus",
    "prism",
    "extrude",
    "revolve",
)
TEMPLATE_NAMES: tuple[str, ...] = (
    "flange",
    "impeller",
    "spur_gear",
    "bracket",
    "enclosure_box",
    "table",
    "chair",
    "shelf",
)


class ObjectSpec(_Model):
    """A whole object: metadata plus the ordered parts whose CSG makes the solid."""

    spec_version: Literal["1.0"] = SPEC_VERSION
    name: str = Field(min_length=1, max_length=120)
    category: str = Field(default="other", max_length=64, description="e.g. mechanical, furniture, enclosure")
    units: Units = "mm"
    description: str = Field(default="", max_length=2000)
    parts: list[Part] = Field(min_length=1, max_length=MAX_PARTS)

    @model_validator(mode="before")
    @classmethod
    def _template_shape_optional(cls, data: Any) -> Any:
        # Humans write {"template": "flange", ...}; the schema (for decoders) asks for shape too.
        if isinstance(data, dict) and isinstance(data.get("parts"), list):
            parts = [
                {"shape": "template", **p}
                if isinstance(p, dict) and "template" in p and "shape" not in p
                else p
                for p in data["parts"]
            ]
            data = {**data, "parts": parts}
        return data
