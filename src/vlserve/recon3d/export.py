"""Write a :class:`CompiledModel` to files: meshes, CAD, rebuild scripts, preview.

| format | file | content |
|---|---|---|
| ``glb``  | model.glb  | one node per part (part id, PBR material, colour); **metres, +Y up** (glTF) |
| ``stl``  | model.stl  | the watertight solid, binary, mm |
| ``obj``  | model.obj + model.mtl | the watertight solid, mm, one group + material per part |
| ``ply``  | model.ply  | the watertight solid, binary, mm, per-face colours |
| ``step`` | model.step | B-rep rebuilt with build123d/OCCT (extra ``cad``), mm |
| ``scad`` | model.scad | OpenSCAD source that rebuilds the model, mm |
| ``py``   | model_blender.py | Blender script (bpy primitives + boolean modifiers), mm |
| ``png``  | model.png  | 2×2 preview (isometric, front, side, top) |

The GLB also carries the spec in its scene's ``extras``. It is a scene of per-part pieces of the
one CSG result (faces keep the part they came from), so its pieces together are exactly the
watertight solid of the other formats.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlserve.errors import RequestError
from vlserve.recon3d._deps import require
from vlserve.recon3d.compiler import CompiledModel

FORMATS: tuple[str, ...] = ("glb", "stl", "obj", "ply", "step", "scad", "py", "png")
MESH_FORMATS: tuple[str, ...] = ("glb", "stl", "obj", "ply")
DEFAULT_FORMATS: tuple[str, ...] = ("glb", "stl", "scad", "png")

#: glTF is +Y up in metres; we model +Z up in mm.
Z_UP_TO_Y_UP = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=float)
MM_TO_M = 1e-3


@dataclass(frozen=True)
class ExportedFile:
    """One written file and how long it took."""

    format: str
    path: Path
    bytes: int
    seconds: float


def parse_formats(formats: str | Iterable[str]) -> list[str]:
    """``"glb,stl"`` or an iterable → validated, de-duplicated list (``"all"`` = every format)."""
    items = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats)]
    items = [f for f in items if f]
    if "all" in items:
        return list(FORMATS)
    unknown = [f for f in items if f not in FORMATS]
    if unknown:
        raise RequestError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def export(
    model: CompiledModel,
    outdir: str | Path,
    formats: str | Iterable[str] = DEFAULT_FORMATS,
    *,
    basename: str = "model",
) -> dict[str, Path]:
    """Write ``formats`` of ``model`` into ``outdir`` (created if missing); format → path."""
    return {f.format: f.path for f in export_files(model, outdir, formats, basename=basename)}


def export_files(
    model: CompiledModel,
    outdir: str | Path,
    formats: str | Iterable[str] = DEFAULT_FORMATS,
    *,
    basename: str = "model",
    on_done: Callable[[ExportedFile], None] | None = None,
) -> list[ExportedFile]:
    """Like :func:`export` but reports size and time per file (``on_done`` is called after each)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for fmt in parse_formats(formats):
        start = time.perf_counter()
        path = WRITERS[fmt](model, out, basename)
        item = ExportedFile(fmt, path, path.stat().st_size, time.perf_counter() - start)
        done.append(item)
        if on_done:
            on_done(item)
    return done


# --- mesh formats ------------------------------------------------------------------------------


def write_glb(model: CompiledModel, out: Path, basename: str) -> Path:
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
    path = out / f"{basename}.glb"
    path.write_bytes(trimesh.exchange.gltf.export_glb(scene))
    return path


def write_stl(model: CompiledModel, out: Path, basename: str) -> Path:
    """Binary STL of the watertight solid, mm."""
    path = out / f"{basename}.stl"
    model.to_trimesh().export(path, file_type="stl")
    return path


def write_ply(model: CompiledModel, out: Path, basename: str) -> Path:
    """Binary PLY with per-face RGBA, mm."""
    path = out / f"{basename}.ply"
    path.write_bytes(require("trimesh").exchange.ply.export_ply(model.to_trimesh(), encoding="binary"))
    return path


def write_obj(model: CompiledModel, out: Path, basename: str) -> Path:
    """OBJ + MTL: shared vertices (so the mesh stays watertight), one group and material per part."""
    leaves = model.leaves
    order = np.argsort(model.face_leaf, kind="stable")
    lines = [
        f"# {_safe_comment(model.spec.name)} — vlserve recon3d, spec {model.spec.spec_version}, units: mm",
        f"mtllib {basename}.mtl",
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
    (out / f"{basename}.mtl").write_text("\n".join(mtl) + "\n", encoding="utf-8")
    path = out / f"{basename}.obj"
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


# --- the other formats live in their own modules (optional deps imported there) -------------------


def write_step(model: CompiledModel, out: Path, basename: str) -> Path:
    """STEP AP214 via build123d (extra ``cad``)."""
    from vlserve.recon3d.step import write_step as _write

    return _write(model, out / f"{basename}.step")


def write_scad(model: CompiledModel, out: Path, basename: str) -> Path:
    """OpenSCAD source."""
    from vlserve.recon3d.scad import scad_source

    path = out / f"{basename}.scad"
    path.write_text(scad_source(model.plan, model.segments), encoding="utf-8")
    return path


def write_blender(model: CompiledModel, out: Path, basename: str) -> Path:
    """Blender Python script."""
    from vlserve.recon3d.blender import blender_script

    path = out / f"{basename}_blender.py"
    path.write_text(blender_script(model.plan, model.segments), encoding="utf-8")
    return path


def write_png(model: CompiledModel, out: Path, basename: str) -> Path:
    """2×2 preview."""
    from vlserve.recon3d.preview import render_preview

    return render_preview(model, out / f"{basename}.png")


WRITERS: dict[str, Callable[[CompiledModel, Path, str], Path]] = {
    "glb": write_glb,
    "stl": write_stl,
    "obj": write_obj,
    "ply": write_ply,
    "step": write_step,
    "scad": write_scad,
    "py": write_blender,
    "png": write_png,
}

__all__ = ["DEFAULT_FORMATS", "FORMATS", "ExportedFile", "export", "export_files", "parse_formats"]
