"""Parameters of the parametric template families (pydantic models, part of the spec schema).

Every parameter is optional. A missing one is derived when the template is expanded: either from
the family's main size (``hub_diameter`` = 25 % of ``diameter``) or from an absolute default given
here in **millimetres** and converted to the spec's units. The expander records every such choice
as a note, so a caller can show which numbers were assumed. Lengths are in the spec's ``units``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_LENGTH = 1.0e5
"""Upper bound of every length, in spec units (keeps decoders and CSG away from absurd values)."""

OptLength = Annotated[float | None, Field(gt=0, le=MAX_LENGTH)]
OptThickness = Annotated[float | None, Field(ge=0, le=MAX_LENGTH)]
BoreShape = Literal["round", "hex", "square", "none"]
LegShape = Literal["square", "round"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FlangeParams(_Params):
    """A flat flange: a disc with a central bore and a circle of bolt holes, optional raised hub."""

    diameter: OptLength = Field(default=None, description="outer diameter; default 80 mm")
    thickness: OptLength = Field(default=None, description="disc thickness; default 12.5 % of diameter")
    bore_shape: BoreShape = Field(default="round", description="shape of the central bore")
    bore_size: OptLength = Field(
        default=None,
        description="bore diameter (round) or across-flats (hex, square); default 25 % of diameter",
    )
    bolt_count: int | None = Field(default=None, ge=0, le=64, description="number of bolt holes; default 6")
    bolt_diameter: OptLength = Field(default=None, description="bolt hole diameter; default 10 % of diameter")
    bolt_circle_diameter: OptLength = Field(
        default=None,
        description="diameter of the circle through the bolt hole centres; default 75 % of diameter",
    )
    hub_diameter: OptLength = Field(default=None, description="raised hub diameter; omit for a flat flange")
    hub_height: OptLength = Field(default=None, description="hub height above the disc; default = thickness")


class ImpellerParams(_Params):
    """A closed-back centrifugal impeller: back plate, hub, curved blades, bore."""

    diameter: OptLength = Field(default=None, description="outer (blade tip) diameter; default 120 mm")
    height: OptLength = Field(
        default=None, description="overall axial height incl. back plate; default 20 % of diameter"
    )
    hub_diameter: OptLength = Field(default=None, description="hub diameter; default 25 % of diameter")
    blade_count: int | None = Field(default=None, ge=2, le=64, description="number of blades; default 6")
    blade_thickness: OptLength = Field(default=None, description="blade thickness; default 3 % of diameter")
    curvature: float | None = Field(
        default=None,
        ge=-90,
        le=90,
        description="sweep of each blade from root to tip in degrees; > 0 backward-curved for "
        "counter-clockwise rotation (seen from +z), 0 straight radial; default 30",
    )
    back_plate_thickness: OptThickness = Field(
        default=None, description="thickness of the back plate (0 = open impeller); default 15 % of height"
    )
    bore_shape: BoreShape = Field(default="round", description="shape of the shaft bore")
    bore_size: OptLength = Field(
        default=None, description="bore diameter or across-flats; default 40 % of hub diameter"
    )


class SpurGearParams(_Params):
    """An involute spur gear (standard full-depth teeth)."""

    teeth: int | None = Field(default=None, ge=6, le=300, description="number of teeth; default 20")
    module: OptLength = Field(default=None, description="gear module (pitch diameter / teeth); default 2 mm")
    outer_diameter: OptLength = Field(
        default=None, description="tip diameter; if given it sets module = outer_diameter / (teeth + 2)"
    )
    thickness: OptLength = Field(default=None, description="face width; default 5 × module")
    pressure_angle: float | None = Field(default=None, ge=10, le=35, description="degrees; default 20")
    bore_shape: BoreShape = Field(default="round", description="shape of the shaft bore")
    bore_size: OptLength = Field(
        default=None, description="bore diameter or across-flats; default 25 % of pitch diameter"
    )


class BracketParams(_Params):
    """An L-shaped angle bracket: a horizontal leg along +x, a vertical leg along +z, holes in both."""

    length: OptLength = Field(default=None, description="horizontal leg length (x); default 60 mm")
    height: OptLength = Field(default=None, description="vertical leg height (z); default = length")
    width: OptLength = Field(default=None, description="bracket width (y); default 2/3 of length")
    thickness: OptLength = Field(default=None, description="plate thickness; default 8 % of length")
    hole_diameter: OptThickness = Field(
        default=None, description="mounting hole diameter (0 = none); default 10 % of length"
    )
    holes_per_leg: int | None = Field(default=None, ge=0, le=8, description="holes in each leg; default 1")
    gusset: bool = Field(default=False, description="add a triangular stiffening rib in the middle")


class EnclosureBoxParams(_Params):
    """A hollow rectangular enclosure, open at the top or closed, with an optional cable hole."""

    length: OptLength = Field(default=None, description="outer size along x; default 100 mm")
    width: OptLength = Field(default=None, description="outer size along y; default 60 % of length")
    height: OptLength = Field(default=None, description="outer size along z; default 40 % of length")
    wall_thickness: OptLength = Field(default=None, description="wall and floor thickness; default 2 mm")
    open_top: bool = Field(default=True, description="true: no lid; false: closed hollow box")
    cable_hole_diameter: OptThickness = Field(
        default=None, description="hole in the -x wall (0 or omitted = none)"
    )


class TableParams(_Params):
    """A table: a rectangular top on four legs."""

    length: OptLength = Field(default=None, description="top size along x; default 1200 mm")
    width: OptLength = Field(default=None, description="top size along y; default 50 % of length")
    height: OptLength = Field(default=None, description="overall height; default 750 mm")
    top_thickness: OptLength = Field(default=None, description="default 4 % of height")
    leg_shape: LegShape = Field(default="square", description="leg cross-section")
    leg_size: OptLength = Field(default=None, description="leg width or diameter; default 6 % of height")
    leg_inset: OptThickness = Field(
        default=None, description="distance from the top's edge to the legs; default 0.5 × leg_size"
    )


class ChairParams(_Params):
    """A four-legged chair with a seat and a backrest at +y (the front faces -y)."""

    seat_width: OptLength = Field(default=None, description="seat size along x; default 450 mm")
    seat_depth: OptLength = Field(default=None, description="seat size along y; default = seat_width")
    seat_height: OptLength = Field(default=None, description="floor to top of seat; default 450 mm")
    seat_thickness: OptLength = Field(default=None, description="default 30 mm")
    back_height: OptLength = Field(
        default=None, description="backrest height above the seat; default = seat_height"
    )
    back_thickness: OptLength = Field(default=None, description="default 25 mm")
    leg_shape: LegShape = Field(default="square", description="leg cross-section")
    leg_size: OptLength = Field(default=None, description="leg width or diameter; default 8 % of seat_width")


class ShelfParams(_Params):
    """A bookshelf: two side panels, evenly spaced boards (incl. top and bottom), optional back."""

    width: OptLength = Field(default=None, description="outer size along x; default 800 mm")
    depth: OptLength = Field(default=None, description="outer size along y; default 300 mm")
    height: OptLength = Field(default=None, description="outer size along z; default 1800 mm")
    shelf_count: int | None = Field(
        default=None, ge=2, le=50, description="boards incl. top and bottom; default 5"
    )
    board_thickness: OptLength = Field(
        default=None, description="thickness of boards and sides; default 18 mm"
    )
    back_panel: bool = Field(default=True, description="add a back panel at +y")
    back_thickness: OptLength = Field(default=None, description="default 5 mm")
