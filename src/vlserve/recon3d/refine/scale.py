"""Metric scale and the ground frame: a printed ArUco marker, or the dominant plane of the points.

SfM recovers shape up to an unknown similarity. A printed square ArUco marker of known side lying
on the table beside the object fixes all of it: its four corners, detected in every registered
photo (OpenCV, sub-pixel refinement) and triangulated with the SfM cameras, give the scale
(``side_mm / mean triangulated side``) and the ground plane (the marker's plane, normal towards
the cameras), hence a **world frame in mm with z up and the marker centre at the origin**.

Without a marker the ground is the dominant plane of the points (RANSAC) and the scale stays
unknown (1.0): a known dimension of the spec then fixes it during the fit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.errors import ScaleError
from vlserve.recon3d.refine.sfm import CameraView, SfmResult

#: dictionaries tried in order; the first that yields a marker in two registered views wins
DICTIONARIES = ("DICT_4X4_50", "DICT_5X5_100", "DICT_6X6_250", "DICT_ARUCO_ORIGINAL", "DICT_APRILTAG_36h11")
MIN_MARKER_VIEWS = 2


@dataclass(frozen=True)
class WorldFrame:
    """A similarity from the reconstruction to the world: ``x_world = scale · R (x − origin)``."""

    rotation: NDArray[np.float64]
    """(3, 3); its last row is the ground normal (world z, up)"""
    origin: NDArray[np.float64]
    """(3,) a point on the ground, reconstruction frame"""
    scale: float
    """world units (mm with a marker) per reconstruction unit"""
    metric: bool
    """True when ``scale`` is metric (a marker was measured)"""
    source: str
    """``marker DICT_4X4_50 id 0 in 12 views`` or ``dominant plane``"""
    marker_views: tuple[str, ...] = ()
    marker_side_spread: float = 0.0
    """relative spread (max−min)/mean of the four triangulated sides: a check on the measurement
    (a ChArUco board: (p90 − p10)/median of the scale over its corner pairs)"""
    corners: int = 0
    """corners of the marker (4) or the ChArUco board triangulated for the scale"""
    board: bool = False
    """True when a ChArUco board gave the scale (:mod:`.charuco`)"""

    def apply(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, 3) reconstruction points → world."""
        return np.asarray(self.scale * (points - self.origin) @ self.rotation.T)


def marker_frame(sfm: SfmResult, marker_size_mm: float, *, min_views: int = MIN_MARKER_VIEWS) -> WorldFrame:
    """Find the ArUco marker in the registered photos and build the metric world frame."""
    if not marker_size_mm > 0:
        raise ScaleError("the marker size must be > 0 mm")
    cv2 = require("cv2")
    photos = {p.name: p for p in sfm.photos}
    images = {v.name: cv2.imread(str(photos[v.name]), cv2.IMREAD_GRAYSCALE) for v in sfm.views}
    for dictionary in DICTIONARIES:
        detections = _detect(cv2, dictionary, images)
        ids = Counter(marker_id for found in detections.values() for marker_id in found)
        if not ids:
            continue
        marker_id, count = ids.most_common(1)[0]
        if count < min_views:
            continue
        views = [v for v in sfm.views if marker_id in detections.get(v.name, {})]
        corners = _triangulate_corners(views, [detections[v.name][marker_id] for v in views])
        return _frame_from_corners(corners, marker_size_mm, sfm, f"marker {dictionary} id {marker_id}", views)
    seen = sum(1 for d in DICTIONARIES for found in _detect(cv2, d, images).values() if found)
    raise ScaleError(
        "no ArUco marker was found in at least "
        f"{min_views} registered photos ({seen} detections in all): print a 4x4 ArUco marker, lay it flat "
        "beside the object so it is fully visible in several photos, or give a known dimension instead",
    )


def _detect(cv2: Any, dictionary: str, images: dict[str, Any]) -> dict[str, dict[int, NDArray[np.float64]]]:
    params = cv2.aruco.DetectorParameters()
    # AprilTag's edge-fit refinement: on rendered photos it put the corners within 0.02 px of the
    # truth on average (0.4 px spread); SUBPIX left them 1.4 px inside the marker on average, up
    # to 26 px off where the object hid part of it, and the marker's scale came out 1-1.6 % large
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_APRILTAG
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)), params)
    out: dict[str, dict[int, NDArray[np.float64]]] = {}
    for name, image in images.items():
        if image is None:
            continue
        corners, ids, _rejected = detector.detectMarkers(image)
        found: dict[int, NDArray[np.float64]] = {}
        for c, i in zip(corners, [] if ids is None else ids.ravel(), strict=False):
            found.setdefault(int(i), np.asarray(c, dtype=np.float64).reshape(4, 2))
        out[name] = found
    return out


def _triangulate_corners(views: list[CameraView], pixels: list[NDArray[np.float64]]) -> NDArray[np.float64]:
    """(4, 3) corners by linear (DLT) triangulation over every view that saw the marker."""
    # OpenCV reports corners with pixel centres at integers; COLMAP at +0.5
    normalized = [v.normalized(p + 0.5) for v, p in zip(views, pixels, strict=True)]
    out = np.empty((4, 3))
    for k in range(4):
        rows = []
        for v, xy in zip(views, normalized, strict=True):
            P = v.cam_from_world
            x, y = xy[k]
            rows.append(x * P[2] - P[0])
            rows.append(y * P[2] - P[1])
        _, _, vt = np.linalg.svd(np.asarray(rows))
        out[k] = vt[-1, :3] / vt[-1, 3]
    return out


def _frame_from_corners(
    corners: NDArray[np.float64], size_mm: float, sfm: SfmResult, source: str, views: list[CameraView]
) -> WorldFrame:
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    mean_side = float(sides.mean())
    if not mean_side > 0:
        raise ScaleError("the marker's corners triangulated to one point; take photos from more angles")
    spread = float((sides.max() - sides.min()) / mean_side)
    x_axis = (corners[1] - corners[0]) + (corners[2] - corners[3])
    y_axis = (corners[0] - corners[3]) + (corners[1] - corners[2])
    normal = np.cross(x_axis, y_axis)
    origin = corners.mean(axis=0)
    normal = _towards_cameras(normal / np.linalg.norm(normal), origin, sfm.views)
    rotation = _basis(normal, x_axis)
    return WorldFrame(
        rotation,
        origin,
        size_mm / mean_side,
        True,
        f"{source} in {len(views)} views",
        tuple(v.name for v in views),
        spread,
        corners=4,
    )


def plane_frame(sfm: SfmResult, *, iterations: int = 400, seed: int = 0) -> WorldFrame:
    """The dominant plane of the points (RANSAC) as the ground; scale unknown (1.0)."""
    points = sfm.points
    if len(points) < 20:
        raise ScaleError(f"only {len(points)} points were reconstructed: too few to find the ground plane")
    rng = np.random.default_rng(seed)
    spread = float(np.median(np.linalg.norm(points - np.median(points, axis=0), axis=1)))
    threshold = 0.01 * spread
    best_count, best = -1, (np.zeros(3), np.zeros(3))
    for _ in range(iterations):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm == 0:
            continue
        n /= norm
        count = int((np.abs((points - a) @ n) < threshold).sum())
        if count > best_count:
            best_count, best = count, (n, a)
    normal, anchor = best
    inliers = points[np.abs((points - anchor) @ normal) < threshold]
    if len(inliers) < 0.15 * len(points):
        raise ScaleError("no dominant ground plane in the points: put the object on a textured table")
    centre = inliers.mean(axis=0)
    _, _, vt = np.linalg.svd(inliers - centre)  # least-squares refit on the inliers
    normal = _towards_cameras(vt[-1], centre, sfm.views)
    return WorldFrame(_basis(normal, vt[0]), centre, 1.0, False, f"dominant plane ({len(inliers)} points)")


def _towards_cameras(
    normal: NDArray[np.float64], origin: NDArray[np.float64], views: list[CameraView]
) -> NDArray[np.float64]:
    above = np.mean([float((v.center - origin) @ normal) for v in views])
    return normal if above >= 0 else -normal


def _basis(normal: NDArray[np.float64], x_hint: NDArray[np.float64]) -> NDArray[np.float64]:
    x = x_hint - (x_hint @ normal) * normal
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(normal, x), normal])
