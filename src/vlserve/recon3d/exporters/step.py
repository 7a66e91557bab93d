"""STEP export: the same plan rebuilt as an exact B-rep with build123d (OCCT) primitives and booleans.

Not a mesh conversion: cylinders stay cylinders, spheres spheres, so the STEP volume is the true
analytic one (the mesh differs from it only by its faceting). build123d is an optional extra
(``pip install 'vlserve[cad]'``) and is imported only when this module is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlserve.recon3d._deps import require
from vlserve.recon3d.errors import GeometryError
from vlserve.recon3d.placement import Matrix, is_mirroring
from vlserve.recon3d.plan import Leaf, Node, Plan
from vlserve.recon3d.profiles import ensure_ccw, regular_polygon
from vlserve.recon3d.spec import (
    BoxPart,
    ConePart,
    CylinderPart,
    ExtrudePart,
    Op,
    PrimitivePart,
    PrismPart,
    RevolvePart,
    SpherePart,
    TorusPart,
)

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

FLIP_X = np.diag([-1.0, 1.0, 1.0, 1.0])


def build_shape(plan: Plan) -> Any:
    """The plan as one ``build123d`` shape, in mm."""
    bd = require("build123d")
    shape: Any = None
    for node in plan.nodes:
        shape = _combine(shape, _node(bd, node), node.op, node.path)
    # merge coplanar faces once at the end (after every boolean it costs a third of the build)
    shape = shape.clean()
    if plan.scale != 1.0:
        shape = bd.scale(shape, by=plan.scale)
    return shape


def write_step(model: CompiledModel, path: Path) -> Path:
    """Write ``model``'s plan as STEP (mm) to ``path``."""
    return write_plan_step(model.plan, path)


def write_plan_step(plan: Plan, path: Path) -> Path:
    """Write ``plan`` as STEP (mm) to ``path``: needs no compiled mesh, so it can run on its own."""
    bd = require("build123d")
    shape = build_shape(plan)
    shape.label = plan.spec.name
    if not bd.export_step(shape, str(path)):
        raise GeometryError(f"build123d could not write {path.name}")
    return path


def _node(bd: Any, node: Node) -> Any:
    if isinstance(node, Leaf):
        local = _primitive(bd, node.part)
    else:
        local = None
        for child in node.children:
            local = _combine(local, _node(bd, child), child.op, child.path)
    copies = [_place(bd, local, m) for m in node.matrices]
    return copies[0] if len(copies) == 1 else copies[0] + copies[1:]


def _place(bd: Any, shape: Any, matrix: Matrix) -> Any:
    # OCCT placements are rigid: a mirroring matrix M = (M·F)·F with F the x flip.
    if is_mirroring(matrix):
        shape = shape.mirror(bd.Plane.YZ)
        matrix = matrix @ FLIP_X
    gp = require("OCP.gp")
    toploc = require("OCP.TopLoc")
    trsf = gp.gp_Trsf()
    trsf.SetValues(*matrix[:3, :].ravel().tolist())
    return shape.moved(bd.Location(toploc.TopLoc_Location(trsf)))


def _combine(acc: Any, shape: Any, op: Op, path: str) -> Any:
    if acc is None:
        return shape
    if op == "union":
        result = acc + shape
    elif op == "subtract":
        result = acc - shape
    else:
        result = acc & shape
    if result is None or result.volume <= 0:
        raise GeometryError.at(f"{path}.op", f"{op} leaves nothing in the B-rep")
    return result


def _primitive(bd: Any, part: PrimitivePart) -> Any:
    if isinstance(part, BoxPart):
        return bd.Box(part.size.x, part.size.y, part.size.z)
    if isinstance(part, CylinderPart):
        return bd.Cylinder(part.size.diameter / 2, part.size.height)
    if isinstance(part, ConePart):
        c = part.size
        if c.bottom_diameter == c.top_diameter:
            # OCCT cannot make a cone with a zero half-angle: it is a cylinder
            return bd.Cylinder(c.bottom_diameter / 2, c.height)
        return bd.Cone(c.bottom_diameter / 2, c.top_diameter / 2, c.height)
    if isinstance(part, SpherePart):
        return bd.Sphere(part.size.diameter / 2)
    if isinstance(part, TorusPart):
        return bd.Torus(part.size.major_diameter / 2, part.size.minor_diameter / 2)
    if isinstance(part, PrismPart):
        return _extruded(bd, regular_polygon(part.size.sides, part.size.across_flats), part.size.height)
    if isinstance(part, ExtrudePart):
        return _extruded(bd, np.asarray(part.size.polygon, dtype=float), part.size.height)
    if isinstance(part, RevolvePart):
        pts = ensure_ccw(np.asarray(part.size.profile, dtype=float))
        wire = bd.Wire.make_polygon([bd.Vector(r, 0, z) for r, z in pts], close=True)
        return bd.revolve(bd.Face(wire), axis=bd.Axis.Z)
    raise GeometryError(f"unsupported shape {part.shape}")  # pragma: no cover


def _extruded(bd: Any, outline: np.ndarray, height: float) -> Any:
    # one prism from z = -h/2 (``extrude(both=True)`` fuses two halves: 100× slower on a gear)
    pts = ensure_ccw(outline)
    face = bd.Face(bd.Wire.make_polygon([bd.Vector(x, y, -height / 2) for x, y in pts], close=True))
    return bd.Solid.extrude(face, bd.Vector(0, 0, height))
