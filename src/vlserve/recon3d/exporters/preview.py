"""PNG preview: a 2×2 grid (isometric, front, right, top) drawn headless with matplotlib's Agg.

A tiny painter's-algorithm renderer: triangles are projected with numpy, back faces culled,
sorted far to near and drawn as one ``PolyCollection`` per view with Lambert shading of each
part's colour. No OpenGL needed, so it runs on any server.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d._deps import require
from vlserve.recon3d.exporters.fonts import MISSING_GLYPH, preview_fonts

if TYPE_CHECKING:
    from vlserve.recon3d.compiler import CompiledModel

#: (title, direction from the object towards the camera)
VIEWS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("isometric", (0.61, -0.61, 0.5)),
    ("front (−y)", (0.0, -1.0, 0.0)),
    ("right (+x)", (1.0, 0.0, 0.0)),
    ("top (+z)", (0.0, 0.0, 1.0)),
)
LIGHT = np.array([0.35, 0.45, 0.82])
AMBIENT = 0.35
DEPTH_CUE = 0.7
SPLIT_FRACTION = 8.0
MAX_SPLIT_ROUNDS = 8
MAX_PREVIEW_TRIANGLES = 200_000


def camera(direction: tuple[float, float, float]) -> NDArray[np.float64]:
    """(3, 3) rows = camera right, up and towards-viewer axes for a view along ``direction``."""
    z = np.asarray(direction, dtype=float)
    z /= np.linalg.norm(z)
    up = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def _fine_triangles(model: CompiledModel) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(k, 3, 3) triangles and (k, 4) colours, long triangles split so depth sorting works.

    CSG leaves long slivers (a disc's cap fans across the whole part); sorted by their centre
    they would be painted over the walls of holes they actually hide. Splitting them to edges
    of at most 1/8 of the model's size makes the painter's algorithm right almost everywhere.
    """
    colors = model.face_colors().astype(float) / 255.0
    max_edge = float(np.linalg.norm(model.extents)) / SPLIT_FRACTION
    try:
        from trimesh.remesh import subdivide_to_size

        vertices, faces, index = subdivide_to_size(
            model.vertices, model.faces, max_edge, max_iter=MAX_SPLIT_ROUNDS, return_index=True
        )
        if len(faces) <= MAX_PREVIEW_TRIANGLES:
            return vertices[faces], colors[index]
    except ValueError:  # not converged within max_iter: draw the original triangles
        pass
    return model.vertices[model.faces], colors


def render_preview(model: CompiledModel, path: Path, size_px: int = 900) -> Path:
    """Draw the 2×2 preview of ``model`` into ``path`` (PNG)."""
    require("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    tris, base = _fine_triangles(model)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)

    dpi = 100
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ext = model.extents
    fonts = list(preview_fonts())  # names may be Chinese, Japanese or Korean (see fonts.py)
    fig.suptitle(
        f"{model.spec.name} — {ext[0]:.4g} × {ext[1]:.4g} × {ext[2]:.4g} mm, {model.volume / 1000:.4g} cm³",
        fontsize=11, fontfamily=fonts,
    )
    for k, (title, direction) in enumerate(VIEWS):
        ax: Any = fig.add_subplot(2, 2, k + 1)
        rot = camera(direction)
        proj = tris @ rot.T
        n_cam = normals @ rot.T
        visible = n_cam[:, 2] > 1e-9
        order = np.argsort(proj[visible, :, 2].mean(axis=1))
        polys = np.ascontiguousarray(proj[visible][order][:, :, :2])  # (k, 3, 2): matplotlib's fast path
        shade = AMBIENT + (1 - AMBIENT) * np.clip(
            n_cam[visible][order] @ (LIGHT / np.linalg.norm(LIGHT)), 0, 1
        )
        # depth cue: nearer faces a little brighter, so stacked flat faces (blade tops over a
        # back plate, seen from the top) stay distinguishable
        depth = proj[visible][order][:, :, 2].mean(axis=1)
        span = max(float(np.ptp(depth)), 1e-12)
        shade *= DEPTH_CUE + (1 - DEPTH_CUE) * (depth - depth.min()) / span
        colors = base[visible][order].copy()
        colors[:, :3] *= shade[:, None]
        # edges in the face colour hide the hairline cracks Agg leaves between triangles
        ax.add_collection(
            PolyCollection(
                polys,  # type: ignore[arg-type]  # a (k, 3, 2) array is matplotlib's fast path
                closed=True,
                facecolors=colors,
                edgecolors=colors,
                linewidths=0.3,
            )
        )
        lo, hi = (proj[:, :, :2].reshape(-1, 2).min(axis=0), proj[:, :, :2].reshape(-1, 2).max(axis=0))
        pad = 0.05 * float(max(hi - lo))
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9, fontfamily=fonts)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("#dddddd")
    # fixed margins: tight_layout would render the whole figure once more just to measure it
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.92, wspace=0.05, hspace=0.12)
    with warnings.catch_warnings():
        # Without any CJK font, preview_fonts() has said so once; not once more per character.
        warnings.filterwarnings("ignore", MISSING_GLYPH, UserWarning)
        fig.savefig(path, format="png")
    return path
