"""What a spec will cost, known before it is compiled: placed primitives and triangles.

A schema-valid spec can ask for a lot: 128 parts, each patterned 1000 times, each a 1024-segment
torus. The plan (templates expanded, every copy a matrix) is cheap to build, so the size of the
job is counted from it and a spec over :class:`BuildLimits` is refused before any CSG runs, with
the part that contributes most named in the message.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlserve.recon3d.errors import SpecError, part_path
from vlserve.recon3d.plan import Group, Leaf, Plan
from vlserve.recon3d.spec import (
    BoxPart,
    ConePart,
    CylinderPart,
    ExtrudePart,
    ObjectSpec,
    PartBase,
    PrimitivePart,
    PrismPart,
    RevolvePart,
    SpherePart,
    TorusPart,
)


@dataclass(frozen=True)
class BuildLimits:
    """Bounds of one build; the service fills them from ``config.Recon3D``."""

    max_primitives: int = 2000
    """placed primitives after templates, patterns and mirrors"""
    max_triangles: int = 1_000_000
    """triangles of the solid: estimated up front, counted after the compile"""
    compile_seconds: float = 60.0
    """hard limit of the compile (the worker process is killed)"""
    export_seconds: float = 60.0
    """hard limit of each exporter"""
    segments: int = 96
    """vertices per full circle"""


class SpecTooLargeError(SpecError):
    """The spec expands past :class:`BuildLimits` (code 4000, refused before compiling)."""


@dataclass(frozen=True)
class Estimate:
    """The size of a plan: per top-level part and in total."""

    primitives: int
    triangles: int
    per_part: list[tuple[str, int, int]]
    """(part path, primitives, triangles) for each top-level part"""


def primitive_triangles(part: PrimitivePart, segments: int) -> int:
    """Triangles of one primitive's mesh at ``segments`` vertices per circle (before CSG)."""
    s = segments
    if isinstance(part, BoxPart):
        return 12
    if isinstance(part, CylinderPart | ConePart):
        return 4 * s
    if isinstance(part, SpherePart):
        return s * s
    if isinstance(part, TorusPart):
        return 2 * s * s
    if isinstance(part, PrismPart):
        return 4 * part.size.sides
    if isinstance(part, ExtrudePart):
        return 4 * len(part.size.polygon)
    if isinstance(part, RevolvePart):
        return 2 * s * len(part.size.profile)
    return 12  # pragma: no cover


def estimate(plan: Plan, segments: int) -> Estimate:
    """Count the placed primitives and estimate the triangles of ``plan`` (CSG can add some)."""
    rows = []
    for node in plan.nodes:
        if isinstance(node, Leaf):
            prims = len(node.matrices)
            tris = prims * primitive_triangles(node.part, segments)
        else:
            assert isinstance(node, Group)
            inner_prims = sum(len(c.matrices) for c in node.children)
            inner_tris = sum(len(c.matrices) * primitive_triangles(c.part, segments) for c in node.children)
            prims, tris = len(node.matrices) * inner_prims, len(node.matrices) * inner_tris
        rows.append((node.path, prims, tris))
    return Estimate(sum(r[1] for r in rows), sum(r[2] for r in rows), rows)


def copies(part: PartBase) -> int:
    """How many placed copies a part makes (pattern × mirrors), counted without building matrices."""
    count = part.pattern.count if part.pattern is not None else 1
    return count * 2 ** len(part.mirror)


def check_spec_size(spec: ObjectSpec, limits: BuildLimits) -> None:
    """The primitive count of ``spec`` against ``limits`` before any plan is built (milliseconds).

    A template counts as one primitive per copy here; :func:`check_budget` counts exactly.
    """
    rows = [(part_path(i, p.id), copies(p)) for i, p in enumerate(spec.parts)]
    total = sum(n for _, n in rows)
    if total > limits.max_primitives:
        path, most = max(rows, key=lambda r: r[1])
        raise SpecTooLargeError.at(
            path,
            f"the spec expands to {total} placed primitives (this part: {most}); the limit is "
            f"{limits.max_primitives} (recon3d.max_primitives): use fewer pattern copies or parts",
            primitives=total,
        )


def check_budget(plan: Plan, limits: BuildLimits) -> Estimate:
    """Raise :class:`SpecTooLargeError` when ``plan`` exceeds ``limits``; else return its estimate."""
    est = estimate(plan, limits.segments)
    if est.primitives > limits.max_primitives:
        path, prims, _ = max(est.per_part, key=lambda r: r[1])
        raise SpecTooLargeError.at(
            path,
            f"the spec expands to {est.primitives} placed primitives (this part: {prims}); the limit is "
            f"{limits.max_primitives} (recon3d.max_primitives): use fewer pattern copies or parts",
            primitives=est.primitives,
        )
    if est.triangles > limits.max_triangles:
        path, _, tris = max(est.per_part, key=lambda r: r[2])
        raise SpecTooLargeError.at(
            path,
            f"the spec would make about {est.triangles:,} triangles (this part: {tris:,}); the limit is "
            f"{limits.max_triangles:,} (recon3d.max_triangles): use fewer segments, copies or parts",
            triangles=est.triangles,
        )
    return est
