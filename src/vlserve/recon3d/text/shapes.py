"""Plain shapes and standard parts, drafted as primitive parts from a :class:`~.reading.Reading`.

Plain shapes: cylinder, tube, sphere, cube, cone. Standard parts, with their dimensions from the
designation where a standard fixes them:

* ISO metric hex nuts (ISO 4032), hex bolts (ISO 4014/4017) and plain washers (ISO 7089), M3–M24:
  "M8 hex nut", "M10x50 bolt", "M12 washer" (threads are not modelled: the hole is the nominal
  diameter and a note says so);
* pipe elbows (90°, bend radius 1.5 × OD by default) and equal tees;
* V-belt pulleys (one groove unless a count is given);
* shafts with a keyway (DIN 6885 key width/depth for the shaft diameter);
* pillow-block bearing housings (base with two bolt holes, a boss with the bearing bore).

Every value taken from the text is marked as used on its number; every value assumed is listed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from vlserve.recon3d.text.reading import Reading, Value

#: ISO metric coarse: d → (nut across flats s, nut height m [ISO 4032], bolt head height k [ISO 4014],
#: washer inner d1, outer d2, thickness h [ISO 7089])
ISO_METRIC: dict[float, tuple[float, float, float, float, float, float]] = {
    3: (5.5, 2.4, 2.0, 3.2, 7.0, 0.5),
    4: (7.0, 3.2, 2.8, 4.3, 9.0, 0.8),
    5: (8.0, 4.7, 3.5, 5.3, 10.0, 1.0),
    6: (10.0, 5.2, 4.0, 6.4, 12.0, 1.6),
    8: (13.0, 6.8, 5.3, 8.4, 16.0, 1.6),
    10: (16.0, 8.4, 6.4, 10.5, 20.0, 2.0),
    12: (18.0, 10.8, 7.5, 13.0, 24.0, 2.5),
    16: (24.0, 14.8, 10.0, 17.0, 30.0, 3.0),
    20: (30.0, 18.0, 12.5, 21.0, 37.0, 3.0),
    24: (36.0, 21.5, 15.0, 25.0, 44.0, 4.0),
}
#: DIN 6885 parallel keys: shaft diameter up to → (key width b, keyway depth in the shaft t1)
KEYWAYS: tuple[tuple[float, float, float], ...] = (
    (8, 2, 1.2), (10, 3, 1.8), (12, 4, 2.5), (17, 5, 3.0), (22, 6, 3.5), (30, 8, 4.0), (38, 10, 5.0),
    (44, 12, 5.0), (50, 14, 5.5), (58, 16, 6.0), (65, 18, 7.0), (75, 20, 7.5), (85, 22, 9.0), (95, 25, 9.0),
    (110, 28, 10.0), (130, 32, 11.0),
)
OVERSHOOT = 1.04
"""cutters are 4 % longer than what they cut, so no zero-thickness skin is left"""


class _Shapes:
    """Reads values (marking them used) and records the defaults it assumes."""

    def __init__(self, r: Reading) -> None:
        self.r = r

    def get(self, name: str, value: Value | None, default: float, why: str = "default") -> float:
        if value is not None:
            self.r.use(value.source, f"{name} = {value.value:g}")
            return value.value
        self.r.assumptions.append(f"{name} = {default:g} mm ({why})")
        return default

    def group(self, index: int, name: str) -> Value | None:
        group = self.r.groups[0] if self.r.groups else None
        if group is None or len(group.values) <= index:
            return None
        return Value(group.values[index], group.approx, group.source)

    def thread(self) -> float | None:
        """The metric size (M8 → 8) marked as used, or None."""
        for role in ("bolt",):
            value = self.r.first(role)
            if value is not None:
                self.r.use(value.source, f"thread = M{value.value:g}")
                return value.value
        group = self.r.groups[0] if self.r.groups else None
        if group is not None and self.r.numbers[group.source].role == "bolt":
            self.r.use(group.source, f"thread = M{group.values[0]:g}")
            return group.values[0]
        return None

    def iso(self, what: str) -> tuple[float, tuple[float, float, float, float, float, float]]:
        d = self.thread()
        if d is None:
            d = self.get("thread", self.r.first("diameter", "main"), 8, "M8 when no size is given")
        size = min(ISO_METRIC, key=lambda k: abs(k - d))
        if size != d:
            self.r.assumptions.append(f"M{d:g} is not an ISO coarse size we know; used the {what} for M{size:g}")
        self.r.assumptions.append(f"M{size:g} {what}: ISO dimensions; the thread itself is not modelled")
        return size, ISO_METRIC[size]


def _cyl(id: str, d: float, h: float, op: str = "union", **kw: Any) -> dict[str, Any]:
    return {"id": id, "shape": "cylinder", "size": {"diameter": d, "height": h}, "op": op, **kw}


def _box(id: str, x: float, y: float, z: float, op: str = "union", **kw: Any) -> dict[str, Any]:
    return {"id": id, "shape": "box", "size": {"x": x, "y": y, "z": z}, "op": op, **kw}


def _hex(id: str, s: float, h: float, **kw: Any) -> dict[str, Any]:
    return {"id": id, "shape": "prism", "size": {"sides": 6, "across_flats": s, "height": h}, **kw}


def nut(sh: _Shapes) -> list[dict[str, Any]]:
    size, (s, m, _k, _d1, _d2, _h) = sh.iso("hex nut")
    return [_hex("nut", s, m), _cyl("thread_hole", size, m * OVERSHOOT, "subtract")]


def bolt(sh: _Shapes) -> list[dict[str, Any]]:
    size, (s, _m, k, _d1, _d2, _h) = sh.iso("hex bolt")
    length = sh.group(1, "length") or sh.r.first("length")
    shank = sh.get("length", length, 5 * size, "5 × the thread diameter")
    # the shank reaches halfway into the head, so the two never merely touch
    return [_hex("head", s, k, position=[0, 0, shank / 2 + k / 2]),
            _cyl("shank", size, shank + k / 2, position=[0, 0, k / 4])]


def washer(sh: _Shapes) -> list[dict[str, Any]]:
    _size, (_s, _m, _k, d1, d2, h) = sh.iso("plain washer")
    return [_cyl("washer", d2, h), _cyl("hole", d1, h * OVERSHOOT, "subtract")]


def _pipe_size(sh: _Shapes) -> tuple[float, float]:
    r = sh.r
    od = sh.get("outer_diameter", r.first("outer_diameter", "diameter", "main"), 50)
    inner, wall = r.first("bore", "hole"), r.first("wall", "thickness")
    if inner is not None:
        return od, sh.get("inner_diameter", inner, 0)
    if wall is not None:
        sh.r.use(wall.source, f"wall = {wall.value:g}")
        return od, od - 2 * wall.value
    return od, sh.get("inner_diameter", None, round(0.8 * od, 3), "80 % of the outer diameter")


def elbow(sh: _Shapes) -> list[dict[str, Any]]:
    od, inner = _pipe_size(sh)
    bend = sh.get("bend_radius", sh.r.first("bend_radius"), 1.5 * od, "1.5 × the outer diameter")
    angle = sh.get("angle", sh.r.first("angle"), 90, "a 90° elbow")
    angle = min(max(angle, 5.0), 180.0)
    # a sector of a torus: the ring minus its bore, cut by a wedge from 0° to the bend angle
    reach = 2.0 * (bend + od) / math.cos(math.radians(angle / 4))
    wedge = [[0.0, 0.0]] + [[round(reach * math.cos(math.radians(a)), 6), round(reach * math.sin(math.radians(a)), 6)]
                            for a in (0.0, angle / 2, angle)]
    return [
        {"id": "bend", "shape": "torus", "size": {"major_diameter": 2 * bend, "minor_diameter": od}},
        {"id": "bore", "shape": "torus", "size": {"major_diameter": 2 * bend, "minor_diameter": inner},
         "op": "subtract"},
        {"id": "sector", "shape": "extrude", "size": {"polygon": wedge, "height": od * 1.1}, "op": "intersect"},
    ]


def tee(sh: _Shapes) -> list[dict[str, Any]]:
    od, inner = _pipe_size(sh)
    length = sh.get("length", sh.r.first("length", "height"), 3 * od, "3 × the outer diameter")
    branch = length / 2
    return [
        _cyl("run", od, length, rotation=[0, 90, 0]),
        _cyl("branch", od, branch, position=[0, 0, branch / 2]),
        _cyl("run_bore", inner, length * OVERSHOOT, "subtract", rotation=[0, 90, 0]),
        _cyl("branch_bore", inner, branch * OVERSHOOT, "subtract", position=[0, 0, branch / 2]),
    ]


def pulley(sh: _Shapes) -> list[dict[str, Any]]:
    r = sh.r
    d = sh.get("diameter", r.first("outer_diameter", "diameter", "main"), 100)
    width = sh.get("width", r.first("width", "thickness", "height"), max(12.0, 0.2 * d), "20 % of the diameter")
    bore = sh.get("bore", r.first("bore", "hole"), round(0.2 * d, 3), "20 % of the diameter")
    grooves = r.count("groove", "grooves") or 1
    depth = min(0.12 * d, 0.45 * (d - bore) / 2)
    pitch = width / grooves
    half = pitch / 2
    profile = [[bore / 2 * 0.99, -width / 2], [d / 2, -width / 2]]
    for i in range(grooves):  # a V per groove, 40° included angle
        z0 = -width / 2 + i * pitch
        top = min(half * 0.8, depth * math.tan(math.radians(20)) + 0.5)
        profile += [[d / 2, z0 + half - top], [d / 2 - depth, z0 + half - 0.2 * top],
                    [d / 2 - depth, z0 + half + 0.2 * top], [d / 2, z0 + half + top]]
    profile += [[d / 2, width / 2], [bore / 2 * 0.99, width / 2]]
    return [{"id": "pulley", "shape": "revolve", "size": {"profile": profile}},
            _cyl("bore", bore, width * OVERSHOOT, "subtract")]


def shaft(sh: _Shapes) -> list[dict[str, Any]]:
    r = sh.r
    d = sh.get("diameter", r.first("diameter", "outer_diameter", "main"), 20)
    length = sh.get("length", r.first("length", "height"), 10 * d, "10 × the diameter")
    b, t1 = next(((b, t) for upto, b, t in KEYWAYS if d <= upto), (0.25 * d, 0.1 * d))
    key_len = sh.get("keyway_length", r.first("key"), round(min(length * 0.5, 1.5 * d), 3), "1.5 × the diameter")
    r.assumptions.append(f"keyway {b:g} × {t1:g} mm (DIN 6885 for a {d:g} mm shaft)")
    return [
        _cyl("shaft", d, length, rotation=[0, 90, 0]),
        _box("keyway", key_len, b, 2 * t1, "subtract", position=[length / 2 - key_len / 2 - 0.1 * d, 0, d / 2]),
    ]


def bearing_housing(sh: _Shapes) -> list[dict[str, Any]]:
    r = sh.r
    bore = sh.get("bore", r.first("bore", "hole", "diameter", "main"), 47, "a 6204 bearing's outer diameter")
    boss = 1.6 * bore
    centre = sh.get("centre_height", r.first("height"), round(0.9 * bore, 3), "0.9 × the bore")
    base_l = sh.get("length", r.first("length"), round(3.2 * bore, 3), "3.2 × the bore")
    base_t = 0.3 * bore
    bolt = sh.thread() or round(0.22 * bore, 1)
    r.assumptions.append(f"pillow block: boss {boss:g} mm, base {base_t:g} mm thick, bolt holes {bolt:g} mm")
    width = 0.9 * bore
    return [
        _box("base", base_l, width, base_t, position=[0, 0, base_t / 2]),
        _cyl("boss", boss, width, rotation=[90, 0, 0], position=[0, 0, centre]),
        _box("web", boss, width, centre, position=[0, 0, centre / 2]),
        _cyl("bearing_bore", bore, width * OVERSHOOT, "subtract", rotation=[90, 0, 0], position=[0, 0, centre]),
        _cyl("bolt_holes", bolt, base_t * 1.5, "subtract", position=[base_l / 2 - 1.2 * bolt, 0, base_t / 2],
             mirror=["yz"]),
    ]


def primitives(r: Reading) -> list[dict[str, Any]]:
    """Parts for the plain shapes: cylinder, tube, sphere, cube, cone (defaults noted)."""
    sh = _Shapes(r)
    name = r.template
    if name == "sphere":
        return [{"id": "sphere", "shape": "sphere",
                 "size": {"diameter": sh.get("diameter", r.first("diameter", "main", "outer_diameter"), 50)}}]
    if name == "cube":
        x = sh.get("length", sh.group(0, "length") or r.first("main", "length", "width"), 50)
        y = sh.get("width", sh.group(1, "width") or r.first("width"), x, "= length")
        z = sh.get("height", sh.group(2, "height") or r.first("height"), x, "= length")
        return [_box("block", x, y, z)]
    diameter = sh.get("diameter", r.first("diameter", "outer_diameter", "main") or sh.group(0, "diameter"), 50)
    height = sh.get("height", r.first("height", "length", "thickness") or sh.group(1, "height"), diameter,
                    "= diameter")
    if name == "cone":
        return [{"id": "cone", "shape": "cone",
                 "size": {"bottom_diameter": diameter, "top_diameter": 0, "height": height}}]
    parts: list[dict[str, Any]] = [_cyl("body", diameter, height)]
    if name == "tube":
        inner, wall = r.first("bore", "hole"), r.first("wall", "thickness")
        if inner is not None:
            inner_d = sh.get("inner_diameter", inner, 0)
        elif wall is not None:
            r.use(wall.source, f"wall = {wall.value:g}")
            inner_d = diameter - 2 * wall.value
        else:
            inner_d = sh.get("inner_diameter", None, 0.8 * diameter, "80 % of the outer diameter")
        parts.append(_cyl("inner", inner_d, height * OVERSHOOT, "subtract"))
    return parts


STANDARD: dict[str, Callable[[_Shapes], list[dict[str, Any]]]] = {
    "hex_nut": nut,
    "hex_bolt": bolt,
    "washer": washer,
    "pipe_elbow": elbow,
    "pipe_tee": tee,
    "pulley": pulley,
    "keyed_shaft": shaft,
    "bearing_housing": bearing_housing,
}


def standard_parts(r: Reading) -> list[dict[str, Any]]:
    """Parts for a standard-part family named in ``r`` (see the module docstring)."""
    return STANDARD[str(r.template)](_Shapes(r))
