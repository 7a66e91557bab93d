"""Furniture families: table, chair, shelf. Boxes and cylinders, mirrored and patterned.

Local frames are bounding-box centred like every part: the floor is at ``z = -height / 2``.

Pieces that meet are built to *overlap* by half the thickness of the piece they meet (a leg
reaches halfway into the seat, a board halfway into the sides), inside that piece, so the union
is exactly the same solid but never depends on two faces coinciding to the last bit: in inches
(450 mm = 17.7165… in) the sums of such values differ in the last bit and the pieces came apart.
"""

from __future__ import annotations

from vlserve.recon3d.params import ChairParams, ShelfParams, TableParams
from vlserve.recon3d.spec import PrimitivePart
from vlserve.recon3d.templates.base import Ctx, ParamError, box, cylinder


def _leg(id: str, shape: str, size: float, h: float, at: tuple[float, float, float]) -> PrimitivePart:
    # one leg at (+x, +y); mirrored through yz and xz it becomes four
    mirror = ["yz", "xz"]
    if shape == "round":
        return cylinder(id, size, h, at, mirror=mirror)
    return box(id, size, size, h, at, mirror=mirror)


def table(p: TableParams, ctx: Ctx) -> list[PrimitivePart]:
    """Top + four legs inset from the corners."""
    length = ctx.pick("length", p.length, ctx.mm(1200), "default 1200 mm")
    width = ctx.pick("width", p.width, 0.5 * length, "50 % of length")
    height = ctx.pick("height", p.height, ctx.mm(750), "default 750 mm")
    top_t = ctx.pick("top_thickness", p.top_thickness, 0.04 * height, "4 % of height")
    leg = ctx.pick("leg_size", p.leg_size, 0.06 * height, "6 % of height")
    inset = ctx.pick("leg_inset", p.leg_inset, 0.5 * leg, "half the leg size")

    if top_t >= height:
        raise ParamError("top_thickness", f"must be < height ({height:g})")
    if 2 * (inset + leg) > min(length, width):
        raise ParamError("leg_size", "four legs do not fit under the top (check leg_size and leg_inset)")
    leg_h = height - top_t / 2  # up to the middle of the top: see the module docstring
    return [
        box("top", length, width, top_t, (0, 0, height / 2 - top_t / 2)),
        _leg(
            "legs",
            p.leg_shape,
            leg,
            leg_h,
            (length / 2 - inset - leg / 2, width / 2 - inset - leg / 2, -height / 2 + leg_h / 2),
        ),
    ]


def chair(p: ChairParams, ctx: Ctx) -> list[PrimitivePart]:
    """Seat on four corner legs, backrest standing on the rear edge of the seat (+y)."""
    sw = ctx.pick("seat_width", p.seat_width, ctx.mm(450), "default 450 mm")
    sd = ctx.pick("seat_depth", p.seat_depth, sw, "= seat_width")
    sh = ctx.pick("seat_height", p.seat_height, ctx.mm(450), "default 450 mm")
    st = ctx.pick("seat_thickness", p.seat_thickness, min(ctx.mm(30), 0.2 * sh), "default 30 mm")
    bh = ctx.pick("back_height", p.back_height, sh, "= seat_height")
    bt = ctx.pick("back_thickness", p.back_thickness, min(ctx.mm(25), 0.2 * sd), "default 25 mm")
    leg = ctx.pick("leg_size", p.leg_size, 0.08 * sw, "8 % of seat_width")

    if st >= sh:
        raise ParamError("seat_thickness", f"must be < seat_height ({sh:g})")
    if 2 * leg > min(sw, sd):
        raise ParamError("leg_size", "legs wider than half the seat")
    if bt >= sd:
        raise ParamError("back_thickness", f"must be < seat_depth ({sd:g})")
    total = sh + bh
    floor = -total / 2
    leg_h = sh - st / 2  # legs and backrest reach into the seat: see the module docstring
    back_h = bh + st / 2
    return [
        box("seat", sw, sd, st, (0, 0, floor + sh - st / 2)),
        _leg("legs", p.leg_shape, leg, leg_h, (sw / 2 - leg / 2, sd / 2 - leg / 2, floor + leg_h / 2)),
        box("backrest", sw, bt, back_h, (0, sd / 2 - bt / 2, floor + sh + bh - back_h / 2)),
    ]


def shelf(p: ShelfParams, ctx: Ctx) -> list[PrimitivePart]:
    """Two sides, ``shelf_count`` evenly spaced boards between them, optional back panel at +y."""
    width = ctx.pick("width", p.width, ctx.mm(800), "default 800 mm")
    depth = ctx.pick("depth", p.depth, ctx.mm(300), "default 300 mm")
    height = ctx.pick("height", p.height, ctx.mm(1800), "default 1800 mm")
    count = ctx.pick_int("shelf_count", p.shelf_count, 5)
    t = ctx.pick(
        "board_thickness", p.board_thickness, min(ctx.mm(18), 0.05 * min(width, height)), "default 18 mm"
    )
    back = (
        ctx.pick("back_thickness", p.back_thickness, min(ctx.mm(5), 0.1 * depth), "default 5 mm")
        if p.back_panel
        else 0.0
    )

    if 2 * t >= width:
        raise ParamError("board_thickness", "the sides leave no room for the boards")
    if count * t >= height:
        raise ParamError("shelf_count", f"{count} boards of {t:g} do not fit in height {height:g}")
    if back >= depth:
        raise ParamError("back_thickness", f"must be < depth ({depth:g})")
    # boards and back reach halfway into the sides, boards halfway into the back (module docstring)
    inner = width - t
    board_d = depth - back / 2
    parts: list[PrimitivePart] = [
        box("sides", t, depth, height, (width / 2 - t / 2, 0, 0), mirror=["yz"]),
        box(
            "boards",
            inner,
            board_d,
            t,
            (0, -back / 4, -height / 2 + t / 2),
            pattern={"kind": "linear", "count": count, "step": [0, 0, (height - t) / (count - 1)]},
        ),
    ]
    if back:
        parts.append(box("back", inner, back, height, (0, depth / 2 - back / 2, 0)))
    return parts
