"""spec → watertight solid: robust CSG with manifold3d, part colours tracked through the booleans.

Every primitive is marked ``as_original()`` before it is placed, so each triangle of the final
mesh still knows which primitive (leaf of the plan) it came from — including the walls a
subtracted part leaves behind. Exports use that to colour faces per part, while the solid itself
stays one watertight mesh.

Units: the solid and every number on :class:`CompiledModel` are in **millimetres** (volume mm³,
area mm²), whatever the spec's ``units``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.budget import BuildLimits, SpecTooLargeError, check_budget, check_spec_size
from vlserve.recon3d.errors import GeometryError
from vlserve.recon3d.plan import Leaf, Node, Plan, build_plan
from vlserve.recon3d.profiles import DEFAULT_SEGMENTS
from vlserve.recon3d.solids import manifold3d, primitive
from vlserve.recon3d.spec import ObjectSpec, Op
from vlserve.recon3d.validation import load_spec

MIN_SEGMENTS, MAX_SEGMENTS = 8, 1024
NO_EFFECT_RTOL = 1e-9


@dataclass
class CompiledModel:
    """The compiled solid (mm) plus what exporters and reports need."""

    spec: ObjectSpec
    plan: Plan
    segments: int
    solid: Any
    """the ``manifold3d.Manifold`` (mm)"""
    vertices: NDArray[np.float64]
    """(n, 3) float64 vertex positions, mm"""
    faces: NDArray[np.int64]
    """(m, 3) int64 counter-clockwise triangles (outward normals)"""
    face_leaf: NDArray[np.int64]
    """(m,) index of the plan leaf each triangle came from (-1: unknown)"""
    volume: float
    area: float
    bounds: NDArray[np.float64]
    """(2, 3) min and max corner, mm"""
    watertight: bool
    bodies: int
    genus: int
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def leaves(self) -> list[Leaf]:
        """The primitives of the plan, indexed by ``face_leaf``."""
        return self.plan.leaves

    @property
    def notes(self) -> list[str]:
        """Values assumed while expanding templates."""
        return self.plan.notes

    @property
    def extents(self) -> NDArray[np.float64]:
        """(3,) bounding box size, mm."""
        return np.asarray(self.bounds[1] - self.bounds[0])

    def face_colors(self) -> NDArray[np.uint8]:
        """(m, 4) uint8 RGBA per triangle, from the part that made it."""
        table = np.array(
            [[round(c * 255) for c in leaf.color] for leaf in self.leaves] + [[180, 180, 180, 255]]
        )
        return table[self.face_leaf].astype(np.uint8)

    def to_trimesh(self) -> Any:
        """The solid as a ``trimesh.Trimesh`` with per-face colours (needs trimesh)."""
        from vlserve.recon3d._deps import require

        trimesh = require("trimesh")
        return trimesh.Trimesh(self.vertices, self.faces, face_colors=self.face_colors(), process=False)

    def summary(self) -> dict[str, Any]:
        """JSON-able report: name, volume, bounds, watertightness, warnings, assumed values."""
        return {
            "name": self.spec.name,
            "units": "mm",
            "volume_mm3": self.volume,
            "area_mm2": self.area,
            "bounds_mm": self.bounds.tolist(),
            "extents_mm": self.extents.tolist(),
            "triangles": int(len(self.faces)),
            "watertight": self.watertight,
            "bodies": self.bodies,
            "genus": self.genus,
            "segments": self.segments,
            "compile_seconds": self.seconds,
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def compile_spec(
    spec: ObjectSpec | dict[str, Any] | str | bytes | Path,
    *,
    segments: int = DEFAULT_SEGMENTS,
    limits: BuildLimits | None = None,
) -> CompiledModel:
    """Validate ``spec`` and build its solid. Pure: no files are written.

    ``segments`` is the number of vertices per full circle (cylinders, cones, spheres, tori,
    revolves). Raises :class:`SpecError` for invalid specs and :class:`GeometryError` for
    impossible geometry (a subtract or intersect that leaves nothing, degenerate polygons).
    With ``limits``, a spec that expands past ``max_primitives`` or ``max_triangles`` is refused
    before any CSG runs (:class:`~.budget.SpecTooLargeError`); the time limits need a separate
    process: run :func:`vlserve.recon3d.build.build_files` in one that can be killed.

    Parts that should touch but miss each other by float rounding (a chair in decimal inches
    whose seat is 1 ulp above its legs) are welded: when the result falls apart into bodies
    closer to each other than ``WELD_RTOL`` of the model's size, it is built again with every
    unioned primitive grown by that much, and a warning says so.
    """
    if not MIN_SEGMENTS <= segments <= MAX_SEGMENTS:
        raise GeometryError.at("segments", f"must be between {MIN_SEGMENTS} and {MAX_SEGMENTS}")
    start = time.perf_counter()
    spec = load_spec(spec)
    if limits is not None:
        check_spec_size(spec, limits)
    plan = build_plan(spec)
    if limits is not None:
        check_budget(plan, replace(limits, segments=segments))
    warnings = list(plan.warnings)
    builder = _Builder(segments, plan.warnings)
    solid = builder.build(plan)
    gap = _weld_gap(solid)
    if gap is not None:
        plan.warnings[:] = warnings
        builder = _Builder(segments, plan.warnings, grow=gap)
        solid = builder.build(plan)
        plan.warnings.append(f"welded parts that missed each other by float rounding (< {gap * plan.scale:.2g} mm)")
    solid = solid.scale([plan.scale] * 3)
    if limits is not None and solid.num_tri() > limits.max_triangles:
        raise SpecTooLargeError(
            f"the solid has {solid.num_tri():,} triangles; the limit is {limits.max_triangles:,} "
            "(recon3d.max_triangles): use fewer segments, copies or parts"
        )
    return _finish(spec, plan, segments, solid, builder.origin, time.perf_counter() - start)


WELD_RTOL = 1e-9
"""bodies closer than this share of the model's diagonal are meant to touch"""
MAX_WELD_BODIES = 64


def _weld_gap(solid: Any) -> float | None:
    """The growth that welds ``solid``'s bodies when they only miss each other by rounding, else None."""
    bodies = solid.decompose()
    if not 1 < len(bodies) <= MAX_WELD_BODIES:
        return None
    box = np.asarray(solid.bounding_box(), dtype=float)
    tol = WELD_RTOL * float(np.linalg.norm(box[3:] - box[:3]))
    near = any(a.min_gap(b, tol) < tol for i, a in enumerate(bodies) for b in bodies[i + 1 :])
    return 4 * tol if near else None


class _Builder:
    def __init__(self, segments: int, warnings: list[str], grow: float = 0.0) -> None:
        self.m = manifold3d()
        self.segments = segments
        self.warnings = warnings
        self.grow = grow
        """absolute growth of every unioned primitive (welding); 0: none"""
        self.origin: dict[int, int] = {}
        """manifold original id → plan leaf index"""

    def build(self, plan: Plan) -> Any:
        solid: Any = None
        for node in plan.nodes:
            solid = self.combine(solid, self.node(node), node.op, node.path)
        return solid

    def node(self, node: Node, union: bool = True) -> Any:
        if isinstance(node, Leaf):
            local = primitive(node.part, self.segments, node.path)
            if self.grow and union and node.op == "union":
                lo, hi = np.asarray(local.bounding_box()[:3]), np.asarray(local.bounding_box()[3:])
                centre = (lo + hi) / 2
                factor = 1 + 2 * self.grow / max(float((hi - lo).min()), 1e-12)
                local = local.translate((-centre).tolist()).scale([factor] * 3).translate(centre.tolist())
            local = local.as_original()
            self.origin[local.original_id()] = node.index
            return self.place(local, node.matrices)
        local = None
        for child in node.children:
            local = self.combine(local, self.node(child, union and node.op == "union"), child.op, child.path)
        return self.place(local, node.matrices)

    def place(self, local: Any, matrices: list[NDArray[np.float64]]) -> Any:
        copies = [local.transform(m[:3, :].tolist()) for m in matrices]
        return copies[0] if len(copies) == 1 else self.m.Manifold.batch_boolean(copies, self.m.OpType.Add)

    def combine(self, acc: Any, solid: Any, op: Op, path: str) -> Any:
        if solid.is_empty():
            raise GeometryError.at(path, "the part has no volume")
        if acc is None:
            return solid
        if op == "union":
            return acc + solid
        before = acc.volume()
        result = acc - solid if op == "subtract" else acc ^ solid
        if result.is_empty():
            what = (
                "removes the whole solid" if op == "subtract" else "does not overlap the solid built so far"
            )
            raise GeometryError.at(f"{path}.op", f"{op} {what}: nothing would be left")
        if op == "subtract" and abs(result.volume() - before) <= NO_EFFECT_RTOL * before:
            self.warnings.append(f"{path}: subtract has no effect (the part does not overlap the solid)")
        return result


def _finish(
    spec: ObjectSpec, plan: Plan, segments: int, solid: Any, origin: dict[int, int], seconds: float
) -> CompiledModel:
    status = solid.status()
    if str(status) != "Error.NoError" or solid.is_empty():
        raise GeometryError(f"the CSG result is invalid ({status})")
    mesh = solid.to_mesh64()
    vertices = np.asarray(mesh.vert_properties, dtype=np.float64)[:, :3]
    faces = np.asarray(mesh.tri_verts, dtype=np.int64)
    face_leaf = np.full(len(faces), -1, dtype=np.int64)
    runs = np.asarray(mesh.run_index, dtype=np.int64) // 3
    for k, original in enumerate(mesh.run_original_id):
        face_leaf[runs[k] : runs[k + 1]] = origin.get(int(original), -1)
    bodies = len(solid.decompose())
    warnings = plan.warnings
    if bodies > 1:
        warnings.append(f"the result has {bodies} separate bodies (some parts do not touch)")
    lo, hi = solid.bounding_box()[:3], solid.bounding_box()[3:]
    return CompiledModel(
        spec=spec,
        plan=plan,
        segments=segments,
        solid=solid,
        vertices=vertices,
        faces=faces,
        face_leaf=face_leaf,
        volume=float(solid.volume()),
        area=float(solid.surface_area()),
        bounds=np.array([lo, hi], dtype=np.float64),
        watertight=is_watertight(faces),
        bodies=bodies,
        genus=int(solid.genus()),
        seconds=seconds,
        warnings=warnings,
    )


def is_watertight(faces: NDArray[np.int64]) -> bool:
    """True when every directed edge of the (m, 3) triangles appears once and its reverse once."""
    if len(faces) == 0:
        return False
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    n = int(faces.max()) + 1
    forward = edges[:, 0] * n + edges[:, 1]
    backward = edges[:, 1] * n + edges[:, 0]
    if len(np.unique(forward)) != len(forward):
        return False
    return bool(np.array_equal(np.sort(forward), np.sort(backward)))
