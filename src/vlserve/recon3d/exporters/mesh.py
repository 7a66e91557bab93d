"""Mesh writers: GLB (one coloured node per part, metres, +Y up), STL, OBJ + MTL, PLY (mm).

Each writer takes the compiled model and the file to write and returns that path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vlserve.recon3d._deps import require

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

#: glTF is +Y up in metres; we model +Z up in mm.
Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=float)
MM_TO_M = 1e-3


def write_glb(model: CompiledModel, path: Path) -> Path:
    """Scene with one coloured node per part (metres, +Y up); the spec in ``extras``."""
    trimesh = require("trimesh")
    scene = trimesh.Scene()
    transform = Z_UP_TO_Y_UP @ np.diag([MM_TO_M, MM_TO_M, MM_TO_M, 1.0])
    leaves = model.leaves
    for index in np.unique(model.face_leaf):
        faces = model.faces[model.face_leaf == index]
        used, inverse = np.unique(faces, return_inverse=True)
        piece = trimesh.Trimesh(model.vertices[used], inverse.reshape(-1, 3), process=False)
        if index >= 0:
            leaf = leaves[index]
            name, color, mat = leaf.part_id, leaf.color, leaf.material
            metallic, rough, mat_name = mat.metallic, mat.roughness, f"{leaf.part_id}:{mat.name}"
        else:
            name, color, metallic, rough, mat_name = (
                "unassigned",
                (0.7, 0.7, 0.7, 1.0),
                0.0,
                0.6,
                "unassigned",
            )
        piece.visual = trimesh.visual.TextureVisuals(
            material=trimesh.visual.material.PBRMaterial(
                name=mat_name,
                baseColorFactor=[round(c * 255) for c in color],
                metallicFactor=metallic,
                roughnessFactor=rough,
                alphaMode="BLEND" if color[3] < 1 else None,
            )
        )
        scene.add_geometry(piece, node_name=name, geom_name=name, transform=transform)
    scene.metadata["vlserve"] = {
        "spec": model.spec.model_dump(mode="json"),
        "source_units": "mm",
        "gltf_units": "m",
    }
    path.write_bytes(trimesh.exchange.gltf.export_glb(scene))
    return path


def write_stl(model: CompiledModel, path: Path) -> Path:
    """Binary STL of the watertight solid, mm."""
    model.to_trimesh().export(path, file_type="stl")
    return path


def write_ply(model: CompiledModel, path: Path) -> Path:
    """Binary PLY with per-face RGBA, mm."""
    path.write_bytes(require("trimesh").exchange.ply.export_ply(model.to_trimesh(), encoding="binary"))
    return path


def write_obj(model: CompiledModel, path: Path) -> Path:
    """OBJ + MTL: shared vertices (so the mesh stays watertight), one group and material per part."""
    leaves = model.leaves
    order = np.argsort(model.face_leaf, kind="stable")
    lines = [
        f"# {_safe_comment(model.spec.name)} — vlserve recon3d, spec {model.spec.spec_version}, units: mm",
        f"mtllib {path.stem}.mtl",
    ]
    lines += [f"v {x:.10g} {y:.10g} {z:.10g}" for x, y, z in model.vertices]
    mtl = [f"# materials of {_safe_comment(model.spec.name)}"]
    current = None
    for f in order:
        index = int(model.face_leaf[f])
        if index != current:
            current = index
            name = leaves[index].part_id if index >= 0 else "unassigned"
            mat = f"m{index + 1}_{_safe(name)}"
            lines += [f"g {_safe(name)}", f"usemtl {mat}"]
            mtl += _mtl_entry(mat, model, index)
        a, b, c = model.faces[f] + 1
        lines.append(f"f {a} {b} {c}")
    path.with_suffix(".mtl").write_text("\n".join(mtl) + "\n", encoding="utf-8")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _mtl_entry(name: str, model: CompiledModel, index: int) -> list[str]:
    if index < 0:
        r, g, b, a, metallic, rough = 0.7, 0.7, 0.7, 1.0, 0.0, 0.6
    else:
        leaf = model.leaves[index]
        (r, g, b, a), metallic, rough = leaf.color, leaf.material.metallic, leaf.material.roughness
    return [
        f"newmtl {name}",
        f"Kd {r:.4f} {g:.4f} {b:.4f}",
        "Ka 0 0 0",
        "Ks " + " ".join([f"{0.5 * metallic:.3f}"] * 3),
        f"Ns {max(1.0, (1 - rough) * 500):.0f}",
        f"d {a:.3f}",
        f"Pm {metallic:.3f}",
        f"Pr {rough:.3f}",
        "",
    ]


def _safe_comment(text: str) -> str:
    return " ".join(text.split())  # a newline in a name would end the comment


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "part"
