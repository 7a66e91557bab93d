"""A small CPU renderer for testing refinement: textured object on a table with an ArUco marker
(or a ChArUco board).

Photos with known geometry are what the refinement harness and its tests need: the object's
mesh (from a known spec) stands on a textured ground plane beside a printed ArUco marker, and
cameras on two rings look at it. Pixels are ray-cast with trimesh (Embree through ``embreex``
when installed, ~0.1 s a view; trimesh's own intersector otherwise, much slower) and coloured by
a **solid 3D noise texture** of the hit point, so the texture is glued to the surface in world
space and every view sees the same features, which is what SIFT and structure-from-motion need.
A fixed directional light adds Lambert shading.

Conventions are COLMAP's/OpenCV's: camera x right, y down, z forward; ``cam_from_world`` is the
3×4 matrix ``[R | t]`` with ``x_cam = R x_world + t``; ``K`` the 3×3 intrinsics; pixel centres
at ``+0.5``. World units are millimetres, z up, the ground at ``z = ground_z``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require

if TYPE_CHECKING:
    from vlserve.recon3d.refine.options import CharucoSpec

LIGHT = np.array([0.35, -0.45, 0.82]) / np.linalg.norm([0.35, -0.45, 0.82])
ARUCO_DICT = "DICT_4X4_50"


@dataclass(frozen=True)
class View:
    """One rendered photo and the camera that took it."""

    image: NDArray[np.uint8]
    """(h, w, 3) uint8 RGB"""
    K: NDArray[np.float64]
    """(3, 3) intrinsics"""
    cam_from_world: NDArray[np.float64]
    """(3, 4) ``[R | t]``"""


@dataclass(frozen=True)
class Marker:
    """A printed ArUco marker lying on the ground: ``size`` mm (black square, without margin)."""

    size: float
    center: tuple[float, float]
    marker_id: int = 0
    dictionary: str = ARUCO_DICT

    def corners(self, ground_z: float) -> NDArray[np.float64]:
        """(4, 3) world corners in OpenCV's order (top-left, top-right, bottom-right, bottom-left
        of the marker image, whose top edge points to +y)."""
        cx, cy = self.center
        h = self.size / 2
        return np.array(
            [
                [cx - h, cy + h, ground_z],
                [cx + h, cy + h, ground_z],
                [cx + h, cy - h, ground_z],
                [cx - h, cy - h, ground_z],
            ]
        )


@dataclass(frozen=True)
class Board:
    """A printed ChArUco board lying on the ground, centred at ``center``: its squares run along
    world x (columns) and world −y (rows, as the board image's rows go down), on a white sheet
    with a margin of one square."""

    spec: CharucoSpec
    center: tuple[float, float]

    @property
    def sheet_mm(self) -> tuple[float, float]:
        """(width, height) of the sheet, margin included."""
        return ((self.spec.squares_x + 2) * self.spec.square_mm, (self.spec.squares_y + 2) * self.spec.square_mm)


def value_noise(points: NDArray[np.float64], cell: float, seed: int) -> NDArray[np.float64]:
    """(n,) smooth noise in [0, 1] at (n, 3) points: trilinear interpolation of random lattice values."""
    p = points / cell
    base = np.floor(p).astype(np.int64)
    frac = p - base
    frac = frac * frac * (3 - 2 * frac)  # smoothstep: no visible lattice creases
    out = np.zeros(len(points))
    fx, fy, fz = frac[:, 0], frac[:, 1], frac[:, 2]
    for corner in range(8):
        ox, oy, oz = corner & 1, (corner >> 1) & 1, (corner >> 2) & 1
        weight = (fx if ox else 1 - fx) * (fy if oy else 1 - fy) * (fz if oz else 1 - fz)
        out += weight * _hash01(base + (ox, oy, oz), seed)
    return out


def _hash01(lattice: NDArray[np.int64], seed: int) -> NDArray[np.float64]:
    # integer hash (wrapping uint64 arithmetic): cheap, deterministic, no visible pattern
    h = (
        (lattice[:, 0].astype(np.uint64) * np.uint64(73856093))
        ^ (lattice[:, 1].astype(np.uint64) * np.uint64(19349663))
        ^ (lattice[:, 2].astype(np.uint64) * np.uint64(83492791))
        ^ np.uint64(seed * 2654435761 % 2**32)
    )
    h ^= h >> np.uint64(13)
    h *= np.uint64(0x5BD1E995)
    h ^= h >> np.uint64(15)
    return (h % np.uint64(65536)).astype(np.float64) / 65535.0


def solid_texture(points: NDArray[np.float64], cell: float, seed: int) -> NDArray[np.float64]:
    """(n, 3) RGB in [0, 1]: two octaves of value noise, contrast-stretched, tinted per seed."""
    n = 0.65 * value_noise(points, cell, seed) + 0.35 * value_noise(points, cell / 2.2, seed + 1)
    n = np.clip((n - 0.5) * 3.5 + 0.5, 0.0, 1.0)
    tint = np.random.default_rng(seed).uniform(0.55, 1.0, 3)
    return n[:, None] * tint[None, :] * 0.9 + 0.05


def look_at(eye: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    """(3, 4) ``cam_from_world`` of a camera at ``eye`` looking at ``target``, world z up."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.hstack([rotation, (-rotation @ eye)[:, None]])


def ring_cameras(
    n: int, target: NDArray[np.float64], distance: float, elevations: tuple[float, ...] = (30.0, 40.0)
) -> list[NDArray[np.float64]]:
    """``n`` cameras around ``target``, azimuths evenly spread, elevations (degrees) alternating."""
    cams = []
    for i in range(n):
        azimuth = np.radians(360.0 * i / n + 7.0)
        elevation = np.radians(elevations[i % len(elevations)])
        eye = target + distance * np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        cams.append(look_at(eye, target))
    return cams


class Scene:
    """An object mesh (mm, z up) standing on a textured table, with an optional ArUco marker."""

    def __init__(
        self,
        vertices: NDArray[np.float64],
        faces: NDArray[np.int64],
        *,
        marker: Marker | None = None,
        ground_size: float | None = None,
        seed: int = 0,
        board: Board | None = None,
    ) -> None:
        trimesh = require("trimesh")
        lo, hi = vertices.min(axis=0), vertices.max(axis=0)
        self.size = float(np.linalg.norm(hi - lo))
        self.ground_z = float(lo[2])
        self.marker = marker
        self.seed = seed
        half = (ground_size or 4.0 * self.size) / 2
        centre = (lo + hi) / 2
        g = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]], dtype=np.float64) + [
            centre[0],
            centre[1],
            self.ground_z,
        ]
        all_vertices = np.vstack([vertices, g])
        n = len(vertices)
        ground_faces = np.array([[n, n + 1, n + 2], [n, n + 2, n + 3]])
        self.object_faces = len(faces)
        self.mesh = trimesh.Trimesh(all_vertices, np.vstack([faces, ground_faces]), process=False)
        self._marker_image = _marker_bitmap(marker) if marker else None
        self.board = board
        self._board_image = _board_bitmap(board.spec) if board else None

    def render(
        self, cam_from_world: NDArray[np.float64], K: NDArray[np.float64], width: int, height: int, ss: int = 1
    ) -> View:
        """Ray-cast one view; ``ss`` > 1 supersamples ss×ss rays a pixel (anti-aliased edges)."""
        u, v = np.meshgrid((np.arange(width * ss) + 0.5) / ss, (np.arange(height * ss) + 0.5) / ss)
        pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
        rotation, t = cam_from_world[:, :3], cam_from_world[:, 3]
        dirs = (np.linalg.inv(K) @ pix.T).T @ rotation  # = (R^T d_cam)^T
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        eye = -rotation.T @ t
        origins = np.broadcast_to(eye, dirs.shape)
        tri, ray, loc = self.mesh.ray.intersects_id(origins, dirs, multiple_hits=False, return_locations=True)
        rgb = np.full((len(dirs), 3), 0.78)  # background: a pale wall
        rgb[ray] = self._shade(loc, tri)
        img = rgb.reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
        return View((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), K, cam_from_world)

    def _shade(self, points: NDArray[np.float64], tri: NDArray[np.int64]) -> NDArray[np.float64]:
        is_object = tri < self.object_faces
        colour = np.empty((len(points), 3))
        colour[is_object] = solid_texture(points[is_object], self.size * 0.025, self.seed)
        ground = ~is_object
        # a quiet table (as most are): enough texture for SfM, but the features go to the object
        colour[ground] = 0.5 + 0.25 * solid_texture(points[ground], self.size * 0.05, self.seed + 17)
        if self.marker is not None and self._marker_image is not None:
            colour[ground] = self._paint_marker(points[ground], colour[ground])
        if self.board is not None and self._board_image is not None:
            colour[ground] = _paint_sheet(points[ground], colour[ground], self._board_image, self.board.center,
                                          self.board.sheet_mm)
        normals = self.mesh.face_normals[tri]
        lambert = 0.55 + 0.45 * np.abs(normals @ LIGHT)
        return colour * lambert[:, None]

    def _paint_marker(self, points: NDArray[np.float64], colour: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self.marker is not None and self._marker_image is not None
        bitmap = self._marker_image
        cx, cy = self.marker.center
        # the marker's black square fills the central size×size of a 2×size white sheet
        sheet = 2.0 * self.marker.size
        sx = (points[:, 0] - cx) / sheet + 0.5
        sy = 0.5 - (points[:, 1] - cy) / sheet  # image rows go down, world y goes up
        inside = (sx >= 0) & (sx < 1) & (sy >= 0) & (sy < 1)
        px = bitmap.shape[0]
        cols = np.clip((sx[inside] * px).astype(np.int64), 0, px - 1)
        rows = np.clip((sy[inside] * px).astype(np.int64), 0, px - 1)
        out = colour.copy()
        out[inside] = (bitmap[rows, cols] / 255.0)[:, None] * 0.92 + 0.04
        return out


def _paint_sheet(
    points: NDArray[np.float64],
    colour: NDArray[np.float64],
    bitmap: NDArray[np.uint8],
    center: tuple[float, float],
    size_mm: tuple[float, float],
) -> NDArray[np.float64]:
    """``colour`` with the grey ``bitmap`` printed on a ``size_mm`` sheet centred at ``center``
    (image rows along world −y)."""
    sx = (points[:, 0] - center[0]) / size_mm[0] + 0.5
    sy = 0.5 - (points[:, 1] - center[1]) / size_mm[1]
    inside = (sx >= 0) & (sx < 1) & (sy >= 0) & (sy < 1)
    rows_px, cols_px = bitmap.shape
    cols = np.clip((sx[inside] * cols_px).astype(np.int64), 0, cols_px - 1)
    rows = np.clip((sy[inside] * rows_px).astype(np.int64), 0, rows_px - 1)
    out = colour.copy()
    out[inside] = (bitmap[rows, cols] / 255.0)[:, None] * 0.92 + 0.04
    return out


def _board_bitmap(spec: CharucoSpec, px_per_square: int = 80) -> NDArray[np.uint8]:
    """The board as OpenCV draws it (``CharucoBoard.generateImage``), with a one-square white margin."""
    from vlserve.recon3d.refine.charuco import cv2_board

    cv2 = require("cv2")
    size = ((spec.squares_x + 2) * px_per_square, (spec.squares_y + 2) * px_per_square)
    return np.asarray(cv2_board(cv2, spec).generateImage(size, marginSize=px_per_square), dtype=np.uint8)


def _marker_bitmap(marker: Marker) -> NDArray[np.uint8]:
    cv2 = require("cv2")
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, marker.dictionary))
    inner = cv2.aruco.generateImageMarker(dictionary, marker.marker_id, 240)
    sheet = np.full((480, 480), 255, dtype=np.uint8)
    sheet[120:360, 120:360] = inner
    return sheet


def intrinsics(width: int, height: int, focal_factor: float = 1.1) -> NDArray[np.float64]:
    """(3, 3) pinhole intrinsics with focal ``focal_factor × width`` and a centred principal point."""
    f = focal_factor * width
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])


def render_views(
    vertices: NDArray[np.float64],
    faces: NDArray[np.int64],
    n_views: int,
    *,
    width: int = 480,
    height: int = 360,
    marker_size: float | None = None,
    seed: int = 0,
    closeness: float = 1.0,
    charuco: CharucoSpec | None = None,
) -> tuple[Scene, list[View]]:
    """Render the object (mm, z up) from ``n_views`` cameras on two rings; a marker of
    ``marker_size`` mm beside it, or the ChArUco board ``charuco`` (not both); ``closeness``
    scales the camera distance (smaller: closer)."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    extent = hi - lo
    marker = None
    if marker_size:
        gap = 0.6 * marker_size + 0.5 * max(extent[0], extent[1]) + 0.15 * marker_size
        marker = Marker(marker_size, (float((lo[0] + hi[0]) / 2 + gap), float((lo[1] + hi[1]) / 2)))
    board = None
    if charuco is not None:
        if marker is not None:
            raise ValueError("render a marker or a ChArUco board, not both")
        width_mm = charuco.squares_x * charuco.square_mm
        gap = 0.5 * max(extent[0], extent[1]) + 0.5 * width_mm + charuco.square_mm
        board = Board(charuco, (float((lo[0] + hi[0]) / 2 + gap), float((lo[1] + hi[1]) / 2)))
    scene = Scene(vertices, faces, marker=marker, seed=seed, board=board)
    target = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] + 0.3 * extent[2]])
    if marker is not None or board is not None:
        # aim between the object and the marker: both in frame from most of the ring
        beside = marker.center[0] if marker is not None else board.center[0]  # type: ignore[union-attr]
        target[0] += 0.5 * (beside - target[0])
    span = float(np.linalg.norm(extent)) + (marker_size if marker_size else 0.0)
    if charuco is not None:
        span += charuco.square_mm * max(charuco.squares_x, charuco.squares_y)
    K = intrinsics(width, height)
    distance = closeness * span * K[0, 0] / width
    views = [scene.render(c, K, width, height) for c in ring_cameras(n_views, target, distance)]
    return scene, views


def save_views(views: list[View], folder: Path, prefix: str = "view") -> list[Path]:
    """Write the views as PNG files (needs OpenCV); returns their paths in order."""
    cv2 = require("cv2")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, view in enumerate(views):
        path = folder / f"{prefix}_{i:03d}.png"
        cv2.imwrite(str(path), view.image[:, :, ::-1])
        paths.append(path)
    return paths


def as_mesh(model: Any) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(vertices, faces) of a :class:`CompiledModel` moved so it stands on z = 0."""
    vertices = np.asarray(model.vertices, dtype=np.float64).copy()
    vertices[:, 2] -= vertices[:, 2].min()
    return vertices, np.asarray(model.faces, dtype=np.int64)
