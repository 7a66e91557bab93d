"""Metric scale and the ground frame from a printed ChArUco board.

A ChArUco board is a chessboard with an ArUco marker in every white square: the markers name
the squares, so each inner chessboard corner has an id and a known position on the board, and
OpenCV finds it with sub-pixel accuracy (``CharucoDetector``: the corners are interpolated from
the markers around them, then refined on the chessboard's saddle points). A 5×7 board has 24
such corners against a single marker's 4, and chessboard corners sit far more precisely than a
marker's outline, so the scale is steadier:

1. every registered photo is searched for the board; each corner id seen in at least two of
   them is triangulated with the SfM cameras (linear DLT, then the observation that reprojects
   worst is dropped while it is off by more than ``max_error_px`` and two remain);
2. the scale is the **median over every pair of corners** of (distance on the board, mm) /
   (triangulated distance), and its spread (the 10th to 90th percentile of those ratios over
   the median) says how well they agree;
3. the ground is the plane through the corners (least squares, normal towards the cameras),
   world x along the board's columns, the origin at the board's centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.errors import ScaleError
from vlserve.recon3d.refine.options import CharucoSpec
from vlserve.recon3d.refine.scale import WorldFrame, _basis, _towards_cameras
from vlserve.recon3d.refine.sfm import CameraView, SfmResult

MIN_VIEWS = 2
MIN_CORNERS = 4
"""triangulated corners needed: four span the plane and give six pairs"""
MAX_ERROR_PX = 2.0


@dataclass(frozen=True)
class BoardMeasurement:
    """The triangulated corners of a board and what they say."""

    ids: NDArray[np.int64]
    """(n,) corner ids"""
    points: NDArray[np.float64]
    """(n, 3) corners in the reconstruction's frame"""
    scale: float
    """mm per reconstruction unit: the median over corner pairs"""
    spread: float
    """(p90 − p10) / median of the pairs' ratios"""
    pairs: int
    views: tuple[str, ...]
    """the registered photos the board was found in"""


def cv2_board(cv2: Any, spec: CharucoSpec) -> Any:
    """OpenCV's ``CharucoBoard`` for ``spec`` (lengths in mm)."""
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, spec.dictionary))
    return cv2.aruco.CharucoBoard((spec.squares_x, spec.squares_y), spec.square_mm, spec.marker_mm, dictionary)


def detect_corners(cv2: Any, spec: CharucoSpec, image: Any) -> tuple[dict[int, NDArray[np.float64]], int]:
    """``({corner id: (2,) pixel}, markers found)`` of the board in one grey image (OpenCV's pixel
    convention: pixel centres at integers)."""
    params = cv2.aruco.CharucoParameters()
    params.tryRefineMarkers = True  # recover markers the first pass missed, from the board's layout
    detector = cv2.aruco.CharucoDetector(cv2_board(cv2, spec), params)
    corners, ids, _marker_corners, marker_ids = detector.detectBoard(image)
    markers = 0 if marker_ids is None else len(marker_ids)
    if ids is None or corners is None:
        return {}, markers
    pixels = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    return {int(i): pixels[k] for k, i in enumerate(np.asarray(ids).ravel())}, markers


def measure_board(sfm: SfmResult, spec: CharucoSpec, *, min_views: int = MIN_VIEWS,
                  max_error_px: float = MAX_ERROR_PX) -> BoardMeasurement:
    """Find the board in the registered photos, triangulate its corners and measure the scale;
    :class:`ScaleError` (4000) when fewer than four corners are seen in two photos each."""
    cv2 = require("cv2")
    photos = {p.name: p for p in sfm.photos}
    seen: dict[int, list[tuple[CameraView, NDArray[np.float64]]]] = {}
    markers = 0
    views: list[str] = []
    for view in sfm.views:
        image = cv2.imread(str(photos[view.name]), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        found, count = detect_corners(cv2, spec, image)
        markers += count
        if found:
            views.append(view.name)
        for corner_id, pixel in found.items():
            seen.setdefault(corner_id, []).append((view, pixel))
    ids, points = [], []
    for corner_id in sorted(seen):
        point = _triangulate_robust(seen[corner_id], min_views, max_error_px)
        if point is not None:
            ids.append(corner_id)
            points.append(point)
    if len(ids) < MIN_CORNERS:
        raise ScaleError(
            f"no ChArUco board {spec.text()} was found well enough: {len(ids)} of its {spec.corners} corners "
            f"were seen in at least {min_views} registered photos ({len(views)} photos showed corners, "
            f"{markers} of its markers were detected in all), {MIN_CORNERS} are needed. Check the board's "
            "size and dictionary, lay it flat beside the object, fully visible and sharp in several photos, "
            "or give a marker size or a known dimension instead",
            param="charuco",
        )
    board_xyz = np.asarray(cv2_board(cv2, spec).getChessboardCorners(), dtype=np.float64).reshape(-1, 3)
    X, B = np.asarray(points), board_xyz[ids]
    i, j = np.triu_indices(len(ids), k=1)
    measured = np.linalg.norm(X[i] - X[j], axis=1)
    ok = measured > 0
    if not ok.any():
        raise ScaleError("the ChArUco board's corners triangulated to one point; take photos from more angles",
                         param="charuco")
    ratios = np.linalg.norm(B[i] - B[j], axis=1)[ok] / measured[ok]
    scale = float(np.median(ratios))
    p10, p90 = np.percentile(ratios, [10, 90])
    return BoardMeasurement(np.asarray(ids, dtype=np.int64), X, scale, float((p90 - p10) / scale), len(ratios),
                            tuple(views))


def charuco_frame(sfm: SfmResult, spec: CharucoSpec, *, min_views: int = MIN_VIEWS) -> WorldFrame:
    """The metric world frame from a ChArUco board: mm, z up (the board's plane at z = 0), x
    along the board's columns, the origin at its centre."""
    cv2 = require("cv2")
    m = measure_board(sfm, spec, min_views=min_views)
    board_xy = np.asarray(cv2_board(cv2, spec).getChessboardCorners(), dtype=np.float64).reshape(-1, 3)[m.ids, :2]
    centre_x, centre_b = m.points.mean(axis=0), board_xy.mean(axis=0)
    _, s, vt = np.linalg.svd(m.points - centre_x)
    if s[1] < 0.05 * s[0]:
        raise ScaleError(f"the ChArUco board's {len(m.ids)} corners seen lie on one line: the table's plane is "
                         "undefined; show more of the board", param="charuco")
    # the board's axes in the reconstruction: least squares X − x̄ ≈ A (b − b̄)
    A = np.linalg.lstsq(board_xy - centre_b, m.points - centre_x, rcond=None)[0].T  # (3, 2)
    normal = _towards_cameras(vt[-1], centre_x, sfm.views)
    middle = np.array([spec.squares_x, spec.squares_y], dtype=np.float64) * spec.square_mm / 2
    origin = centre_x + A @ (middle - centre_b)
    origin = origin - ((origin - centre_x) @ normal) * normal  # onto the corners' plane
    return WorldFrame(
        _basis(normal, A[:, 0]),
        origin,
        m.scale,
        True,
        f"ChArUco {spec.text()}: {len(m.ids)} corners in {len(m.views)} views",
        m.views,
        m.spread,
        corners=len(m.ids),
        board=True,
    )


def _triangulate_robust(
    observations: list[tuple[CameraView, NDArray[np.float64]]], min_views: int, max_error_px: float
) -> NDArray[np.float64] | None:
    """One corner from its observations, dropping the worst while it reprojects beyond
    ``max_error_px`` (a corner mislabelled in one photo); None when fewer than ``min_views`` stay."""
    # OpenCV reports corners with pixel centres at integers; COLMAP at +0.5
    obs = [(view, view.normalized((pixel + 0.5)[None])[0]) for view, pixel in observations]
    while len(obs) >= min_views:
        point = _dlt(obs)
        errors = []
        for view, xy in obs:
            cam = view.cam_from_world[:, :3] @ point + view.cam_from_world[:, 3]
            if cam[2] <= 0:  # behind a camera: not a corner it saw
                errors.append(np.inf)
                continue
            errors.append(float(np.linalg.norm(cam[:2] / cam[2] - xy)) * view.camera.mean_focal_length())
        worst = int(np.argmax(errors))
        if errors[worst] <= max_error_px:
            return point
        obs.pop(worst)
    return None


def _dlt(obs: list[tuple[CameraView, NDArray[np.float64]]]) -> NDArray[np.float64]:
    rows = []
    for view, (x, y) in obs:
        P = view.cam_from_world
        rows.append(x * P[2] - P[0])
        rows.append(y * P[2] - P[1])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    return np.asarray(vt[-1, :3] / vt[-1, 3])


__all__ = ["BoardMeasurement", "charuco_frame", "cv2_board", "detect_corners", "measure_board"]
