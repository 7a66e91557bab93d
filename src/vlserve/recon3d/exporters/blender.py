"""Blender export: a self-contained ``bpy`` script that rebuilds the model with boolean modifiers.

The script carries the plan as a Python literal (``PLAN``: primitives with their 4×4 placement
matrices, ops, colours) plus a small builder: bpy primitives (cube, cylinder, cone, UV sphere,
torus) or ``from_pydata`` meshes (prism outline, extrusion, revolve), placed copies, then exact
boolean modifiers applied in spec order. One Blender unit is one millimetre; the scene's unit
scale is set so Blender shows mm.

    blender --background --factory-startup --python model_blender.py -- --export model.stl
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlserve.recon3d.colors import to_hex
from vlserve.recon3d.plan import Leaf, Node, Plan
from vlserve.recon3d.profiles import circumradius, ensure_ccw, regular_polygon
from vlserve.recon3d.spec import (
    BoxPart,
    ConePart,
    CylinderPart,
    ExtrudePart,
    PrimitivePart,
    PrismPart,
    RevolvePart,
    SpherePart,
    TorusPart,
)

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

RUNTIME = r'''
import math
import sys

import bpy
from mathutils import Matrix


def clear_scene():
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj, do_unlink=True)


def active():
    return bpy.context.view_layer.objects.active


def from_pydata(name, verts, faces):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.collection.objects.link(obj)
    return obj


def prism_mesh(name, outline, height):
    """Extrude a counter-clockwise outline [[x, y], ...] along z, centred."""
    n = len(outline)
    verts = [(x, y, -height / 2) for x, y in outline] + [(x, y, height / 2) for x, y in outline]
    faces = [list(range(n))[::-1], list(range(n, 2 * n))]
    faces += [[i, (i + 1) % n, n + (i + 1) % n, n + i] for i in range(n)]
    return from_pydata(name, verts, faces)


def revolve_mesh(name, profile, segments):
    """Revolve a counter-clockwise [[r, z], ...] profile about z; points on the axis are shared."""
    verts, index = [], []
    for r, z in profile:
        if r == 0:
            index.append([len(verts)] * segments)
            verts.append((0.0, 0.0, z))
        else:
            index.append(list(range(len(verts), len(verts) + segments)))
            for k in range(segments):
                a = 2 * math.pi * k / segments
                verts.append((r * math.cos(a), r * math.sin(a), z))
    faces = []
    n = len(profile)
    for j in range(n):
        a, b = index[j], index[(j + 1) % n]
        for k in range(segments):
            k1 = (k + 1) % segments
            quad = [a[k], a[k1], b[k1], b[k]]  # outward for a counter-clockwise profile
            face = [v for i, v in enumerate(quad) if v not in quad[:i]]
            if len(face) >= 3:
                faces.append(face)
    return from_pydata(name, verts, faces)


def primitive(name, kind, size, segments):
    if kind == "box":
        bpy.ops.mesh.primitive_cube_add(size=1.0)
        obj = active()
        obj.data.transform(Matrix.Diagonal((size["x"], size["y"], size["z"], 1.0)))
    elif kind == "cylinder":
        bpy.ops.mesh.primitive_cylinder_add(
            vertices=segments, radius=size["diameter"] / 2, depth=size["height"]
        )
        obj = active()
    elif kind == "cone":
        bpy.ops.mesh.primitive_cone_add(
            vertices=segments, radius1=size["bottom_diameter"] / 2, radius2=size["top_diameter"] / 2,
            depth=size["height"],
        )
        obj = active()
    elif kind == "sphere":
        bpy.ops.mesh.primitive_uv_sphere_add(
            segments=segments, ring_count=segments // 2, radius=size["diameter"] / 2
        )
        obj = active()
    elif kind == "torus":
        bpy.ops.mesh.primitive_torus_add(
            major_segments=segments, minor_segments=segments,
            major_radius=size["major_diameter"] / 2, minor_radius=size["minor_diameter"] / 2,
        )
        obj = active()
    elif kind in ("prism", "extrude"):
        obj = prism_mesh(name, size["outline"], size["height"])
    elif kind == "revolve":
        obj = revolve_mesh(name, size["profile"], segments)
    else:
        raise ValueError(kind)
    obj.name = name
    obj.matrix_world = Matrix.Identity(4)
    return obj


def material(name, rgba, metallic, roughness):
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    mat.diffuse_color = rgba
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = rgba
        bsdf.inputs["Metallic"].default_value = metallic
        bsdf.inputs["Roughness"].default_value = roughness
    return mat


def place(obj, matrix):
    """A copy of obj with the 4x4 matrix baked into its mesh (mirrors flip the normals back out)."""
    copy = obj.copy()
    copy.data = obj.data.copy()
    bpy.context.collection.objects.link(copy)
    m = Matrix(matrix)
    copy.data.transform(m)
    if m.to_3x3().determinant() < 0:
        copy.data.flip_normals()
    copy.data.update()
    return copy


def apply_boolean(target, tool, operation):
    mod = target.modifiers.new(name="csg", type="BOOLEAN")
    mod.operation = operation
    mod.solver = "EXACT"
    mod.object = tool
    if hasattr(mod, "material_mode"):
        mod.material_mode = "TRANSFER"
    depsgraph = bpy.context.evaluated_depsgraph_get()
    mesh = bpy.data.meshes.new_from_object(target.evaluated_get(depsgraph))
    target.modifiers.clear()
    old = target.data
    target.data = mesh
    bpy.data.meshes.remove(old)
    bpy.data.objects.remove(tool, do_unlink=True)
    return target


OPERATIONS = {"union": "UNION", "subtract": "DIFFERENCE", "intersect": "INTERSECT"}


def combine(acc, copies, op):
    """Fold placed copies into acc: unions and subtractions copy by copy, intersection with their union."""
    if acc is None:
        acc, copies, op = copies[0], copies[1:], "union"
    if op == "intersect" and len(copies) > 1:
        tool = copies[0]
        for c in copies[1:]:
            tool = apply_boolean(tool, c, "UNION")
        copies = [tool]
    for c in copies:
        acc = apply_boolean(acc, c, OPERATIONS[op])
    return acc


def build_node(node, segments):
    if node["kind"] == "group":
        local = None
        for child in node["children"]:
            local = combine(local, build_node(child, segments), child["op"])
    else:
        local = primitive(node["id"], node["shape"], node["size"], segments)
        local.data.materials.append(material(node["id"], node["color"], node["metallic"], node["roughness"]))
    copies = [place(local, m) for m in node["matrices"]]
    bpy.data.objects.remove(local, do_unlink=True)
    return copies


def build(plan, segments, name, scale):
    clear_scene()
    unit = bpy.context.scene.unit_settings
    unit.system, unit.scale_length, unit.length_unit = "METRIC", 0.001, "MILLIMETERS"
    acc = None
    for node in plan:
        acc = combine(acc, build_node(node, segments), node["op"])
    acc.data.transform(Matrix.Diagonal((scale, scale, scale, 1.0)))
    acc.name = name
    return acc


def export_stl(obj, path):
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj
    if bpy.app.version >= (4, 1, 0):
        bpy.ops.wm.stl_export(filepath=path, export_selected_objects=True)
    else:
        bpy.ops.export_mesh.stl(filepath=path, use_selection=True)
'''

MAIN = r"""
if __name__ == "__main__":
    result = build(PLAN, SEGMENTS, NAME, SCALE)
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if "--export" in argv:
        export_stl(result, argv[argv.index("--export") + 1])
"""


def blender_script(plan: Plan, segments: int) -> str:
    """The whole Blender script for ``plan`` (circles with ``segments`` vertices)."""
    spec = plan.spec
    nodes = [_node(n) for n in plan.nodes]
    # the name comes from model output: it goes in as a JSON string (NAME below) and a
    # whitespace-collapsed comment, never into the docstring where quotes could end it
    header = (
        f"# {' '.join(spec.name.split())}\n"
        f'"""Generated by vlserve recon3d from object spec {spec.spec_version}.\n\n'
        "Rebuilds the model with bpy primitives and exact boolean modifiers; 1 Blender unit = 1 mm.\n"
        "Run: blender --background --factory-startup --python THIS_FILE -- --export model.stl\n"
        "or open it in Blender's Text Editor and press Run Script.\n"
        '"""\n'
    )
    data = (
        f"\nNAME = {json.dumps(spec.name, ensure_ascii=False)}\n"
        f"SEGMENTS = {segments}\n"
        f"SCALE = {plan.scale!r}  # mm per spec unit ({spec.units})\n"
        f"PLAN = {json.dumps(nodes, indent=1)}\n"
    )
    return header + RUNTIME + data + MAIN


def _node(node: Node) -> dict[str, Any]:
    matrices = [[[round(float(v), 12) for v in row] for row in m] for m in node.matrices]
    if isinstance(node, Leaf):
        return {
            "kind": "primitive",
            "id": node.part_id,
            "path": node.path,
            "op": node.op,
            "shape": _shape(node.part),
            "size": _size(node.part),
            "color": list(node.color),
            "hex": to_hex(node.color),
            "metallic": node.material.metallic,
            "roughness": node.material.roughness,
            "matrices": matrices,
        }
    return {
        "kind": "group",
        "id": node.part_id,
        "path": node.path,
        "template": node.template,
        "op": node.op,
        "children": [_node(c) for c in node.children],
        "matrices": matrices,
    }


def _shape(part: PrimitivePart) -> str:
    return str(part.shape)


def _size(part: PrimitivePart) -> dict[str, Any]:
    if isinstance(part, PrismPart):
        outline = regular_polygon(part.size.sides, part.size.across_flats)
        return {
            "outline": outline.tolist(),
            "height": part.size.height,
            "circumradius": circumradius(part.size.sides, part.size.across_flats),
        }
    if isinstance(part, ExtrudePart):
        outline = ensure_ccw(np.asarray(part.size.polygon, dtype=float))
        return {"outline": outline.tolist(), "height": part.size.height}
    if isinstance(part, RevolvePart):
        return {"profile": ensure_ccw(np.asarray(part.size.profile, dtype=float)).tolist()}
    if isinstance(part, BoxPart | CylinderPart | ConePart | SpherePart | TorusPart):
        return part.size.model_dump()
    raise ValueError(f"unsupported shape {part.shape}")  # pragma: no cover


def write_blender(model: CompiledModel, path: Path) -> Path:
    """Write the Blender script that rebuilds ``model`` (mm) to ``path``."""
    path.write_text(blender_script(model.plan, model.segments), encoding="utf-8")
    return path
