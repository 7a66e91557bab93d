"""The build plan: a validated spec with templates expanded, placements and colours resolved.

Every backend (manifold3d mesh, OpenSCAD, Blender, build123d STEP) walks the same plan, so they
cannot disagree about what a pattern, mirror, template or colour means:

    Plan.nodes: [Leaf | Group, ...]        top-level parts in spec order
      Leaf:  one primitive, its placements (list of 4×4 matrices), op, colour, material
      Group: one template part: its child Leafs (local frame), placements, op

All lengths stay in spec units; ``Plan.scale`` (mm per unit) is applied once, to the final solid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from vlserve.recon3d.colors import DEFAULT_MATERIAL, PALETTE, RGBA, Material, material_preset, parse_color
from vlserve.recon3d.errors import SpecError, part_path
from vlserve.recon3d.placement import Matrix, part_matrices
from vlserve.recon3d.spec import MM_PER_UNIT, ObjectSpec, Op, PartBase, PrimitivePart, TemplateBase
from vlserve.recon3d.templates import ParamError, expand
from vlserve.recon3d.validation import check_spec


@dataclass(frozen=True)
class Leaf:
    """One primitive to build: ``part`` gives shape and size; ``matrices`` its copies."""

    index: int
    """position among all leaves of the plan (the colour/face bookkeeping key)"""
    part_id: str
    """the part's id; ``template_id.child_id`` inside a template"""
    path: str
    """how error messages name it: ``parts[2] (id="bolt_holes")``"""
    part: PrimitivePart
    matrices: list[Matrix]
    op: Op
    color: RGBA
    material: Material


@dataclass(frozen=True)
class Group:
    """A template part: children combine in the template's frame, then the result is placed."""

    part_id: str
    path: str
    template: str
    part: TemplateBase
    """the template part as written (its placement fields place the whole group)"""
    children: list[Leaf]
    matrices: list[Matrix]
    op: Op
    notes: list[str]


Node = Leaf | Group


@dataclass
class Plan:
    """Everything a backend needs, in build order."""

    spec: ObjectSpec
    nodes: list[Node]
    scale: float
    """millimetres per spec unit"""
    notes: list[str] = field(default_factory=list)
    """values assumed by templates, ``parts[0] (id="f").params: thickness = 10 (...)``"""
    warnings: list[str] = field(default_factory=list)

    @property
    def leaves(self) -> list[Leaf]:
        """All primitives in build order (template children flattened)."""
        out: list[Leaf] = []
        for node in self.nodes:
            out.extend(node.children if isinstance(node, Group) else [node])
        return out


def build_plan(spec: ObjectSpec) -> Plan:
    """Expand templates and resolve placements and colours (raises SpecError)."""
    check_spec(spec)
    plan = Plan(spec=spec, nodes=[], scale=MM_PER_UNIT[spec.units])
    counter = _Counter()
    last_union_color = PALETTE[0]
    unions = 0
    for i, part in enumerate(spec.parts):
        path = part_path(i, part.id)
        fallback = PALETTE[unions % len(PALETTE)] if part.op == "union" else last_union_color
        color, material = _appearance(part, fallback, path, plan.warnings)
        if part.op == "union":
            unions += 1
            last_union_color = color
        matrices = part_matrices(part)
        if isinstance(part, TemplateBase):
            plan.nodes.append(_group(part, path, matrices, color, material, plan, counter))
        else:
            plan.nodes.append(Leaf(counter.next(), part.id, path, part, matrices, part.op, color, material))
    return plan


class _Counter:
    def __init__(self) -> None:
        self.value = -1

    def next(self) -> int:
        self.value += 1
        return self.value


def _group(
    part: TemplateBase,
    path: str,
    matrices: list[Matrix],
    color: RGBA,
    material: Material,
    plan: Plan,
    counter: _Counter,
) -> Group:
    template = str(part.template)
    try:
        expansion = expand(part, plan.scale)
    except ParamError as err:
        raise SpecError.at(f"{path}.params.{err.field}", err.reason) from err
    except ValidationError as err:
        # a derived dimension came out invalid (e.g. zero): report it against the template
        first = err.errors(include_url=False)[0]
        raise SpecError.at(
            f"{path}.params",
            f"the {template} parameters give an invalid {'.'.join(map(str, first['loc']))}: {first['msg']}",
        ) from err
    children = []
    for child in expansion.parts:
        c_color, c_material = _appearance(child, color, path, plan.warnings, inherit=material)
        children.append(
            Leaf(
                counter.next(),
                f"{part.id}.{child.id}",
                f"{path} {template} {child.id}",
                child,
                part_matrices(child),
                child.op,
                c_color,
                c_material,
            )
        )
    plan.notes.extend(f"{path}.params: {n}" for n in expansion.notes)
    return Group(part.id, path, template, part, children, matrices, part.op, expansion.notes)


def _appearance(
    part: PartBase, fallback: RGBA, path: str, warnings: list[str], inherit: Material | None = None
) -> tuple[RGBA, Material]:
    material = material_preset(part.material) or inherit or DEFAULT_MATERIAL
    if part.material and material_preset(part.material) is None:
        warnings.append(f"{path}.material: unknown material {part.material!r}, using default")
    color = parse_color(part.color)
    if part.color and color is None:
        warnings.append(f"{path}.color: unknown colour {part.color!r}, using the default")
    if color is None:
        color = material.color if material_preset(part.material) else fallback
    return color, material
