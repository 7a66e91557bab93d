"""Bench the metric scale of photo refinement: one ArUco marker vs a ChArUco board, on the same photos.

    python bench/refine_scale.py [--views 16,12,8] [--width 640 --height 480] [--board 5x7:12:9:DICT_5X5_100]
                                 [--blur 0 --noise 0]

A block with a boss stands on a textured table between a printed 40 mm ArUco marker (``DICT_4X4_50``,
on its −y side) and a ChArUco board (on its +x side); both are ray-cast into the same photos
(``vlserve.recon3d.refine.render``) from cameras on two rings. For each view count (subsets of
the 16-view ring, as ``bench/refine.py`` takes them) structure-from-motion runs once (pycolmap),
then both sources of scale measure the same reconstruction:

* ``marker_frame``: the marker's 4 corners triangulated, scale = side / mean triangulated side;
* ``charuco_frame``: every board corner seen in 2 photos triangulated, scale = median over corner
  pairs.

Each frame is compared with the truth the renderer knows: the scale error is the median over
camera pairs of (distance between the cameras in the frame, mm) / (true distance) − 1, the
height error the median relative error of the cameras' heights above the table (the ground
plane and the scale together). Printed side by side, with |marker error| / |board error|.
``--blur S --noise N`` make the photos more like a phone's: a Gaussian blur of S px and Gaussian
noise of N grey levels (seeded) before they are saved.
Needs the extras ``recon3d`` and ``refine``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vlserve.recon3d import compile_spec  # noqa: E402
from vlserve.recon3d.refine.charuco import charuco_frame, measure_board  # noqa: E402
from vlserve.recon3d.refine.errors import RefineError  # noqa: E402
from vlserve.recon3d.refine.options import parse_charuco  # noqa: E402
from vlserve.recon3d.refine.render import (  # noqa: E402
    Board,
    Marker,
    Scene,
    View,
    as_mesh,
    intrinsics,
    ring_cameras,
    save_views,
)
from vlserve.recon3d.refine.scale import WorldFrame, marker_frame  # noqa: E402
from vlserve.recon3d.refine.sfm import SfmOptions, SfmResult, run_sfm  # noqa: E402

MARKER_MM = 40.0
BLOCK = {
    "spec_version": "1.0",
    "name": "block with boss",
    "parts": [
        {"id": "base", "shape": "box", "size": {"x": 60, "y": 40, "z": 20}},
        {"id": "boss", "shape": "cylinder", "size": {"diameter": 24, "height": 16}, "position": [8, 0, 18]},
    ],
}
SUBSETS = {16: list(range(16)), 12: [i for i in range(16) if i % 4 != 3], 8: list(range(0, 16, 2)), 4: [0, 4, 8, 12]}


def render(board_text: str, width: int, height: int, folder: Path, blur: float = 0.0,
           noise: float = 0.0) -> tuple[list[Path], list[View]]:
    """16 photos of the block between the marker and the board."""
    vertices, faces = as_mesh(compile_spec(BLOCK))
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    spec = parse_charuco(board_text)
    board_w = spec.squares_x * spec.square_mm
    board = Board(spec, (float(hi[0] + spec.square_mm + board_w / 2), float((lo[1] + hi[1]) / 2)))
    marker = Marker(MARKER_MM, (float((lo[0] + hi[0]) / 2), float(lo[1] - 1.5 * MARKER_MM)))
    scene = Scene(vertices, faces, marker=marker, board=board)
    target = np.array([(lo[0] + hi[0]) / 2 + 0.3 * board_w, (lo[1] + hi[1]) / 2 - 0.5 * MARKER_MM, 0.3 * hi[2]])
    span = float(np.linalg.norm(hi - lo)) + spec.square_mm * max(spec.squares_x, spec.squares_y) + MARKER_MM
    K = intrinsics(width, height)
    views = [scene.render(c, K, width, height) for c in ring_cameras(16, target, 0.9 * span * K[0, 0] / width)]
    if blur > 0 or noise > 0:
        import cv2

        rng = np.random.default_rng(0)
        degraded = []
        for view in views:
            image = view.image.astype(np.float64)
            if blur > 0:
                image = cv2.GaussianBlur(image, (0, 0), blur)
            image = np.clip(image + rng.normal(0.0, noise, image.shape), 0, 255) + 0.5
            degraded.append(View(image.astype(np.uint8), view.K, view.cam_from_world))
        views = degraded
    return save_views(views, folder), views


def errors(frame: WorldFrame, sfm: SfmResult, truth: dict[str, np.ndarray]) -> tuple[float, float]:
    """(scale error, height error) of ``frame`` against the true camera centres (mm, table at z = 0)."""
    measured = frame.apply(np.array([v.center for v in sfm.views]))
    true = np.array([truth[v.name] for v in sfm.views])
    i, j = np.triu_indices(len(true), k=1)
    ratio = np.linalg.norm(measured[i] - measured[j], axis=1) / np.linalg.norm(true[i] - true[j], axis=1)
    return float(np.median(ratio) - 1), float(np.median(measured[:, 2] / true[:, 2] - 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", default="16,12,8")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--board", default="5x7:12:9:DICT_5X5_100")
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--blur", type=float, default=0.0, help="Gaussian blur of the photos, px (sigma)")
    parser.add_argument("--noise", type=float, default=0.0, help="Gaussian noise of the photos, grey levels")
    args = parser.parse_args()
    counts = [int(v) for v in args.views.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        paths, views = render(args.board, args.width, args.height, Path(tmp) / "photos", args.blur, args.noise)
        print(f"refine scale bench — {args.width}x{args.height} renders (blur {args.blur:g} px, noise "
              f"{args.noise:g}), 40 mm ArUco marker (DICT_4X4_50) vs "
              f"ChArUco {args.board}, both in the same photos; errors against the true cameras "
              f"(rendered in {time.monotonic() - started:.0f} s)")
        truth = {p.name: -v.cam_from_world[:, :3].T @ v.cam_from_world[:, 3] for p, v in zip(paths, views, strict=True)}
        header = (f"{'views':>5} {'reg':>5} {'marker scale':>13} {'board scale':>12} {'ratio':>6} "
                  f"{'marker height':>14} {'board height':>13} {'corners':>7} {'pairs':>6} {'spread':>7} "
                  f"{'marker sides':>12} {'sfm s':>6}")
        print(header)
        print("-" * len(header))
        for n in counts:
            subset = [paths[i] for i in SUBSETS[n]]
            t = time.monotonic()
            try:
                sfm = run_sfm(subset, options=SfmOptions(max_features=args.features))
            except RefineError as err:
                print(f"{n:>5}  SfM failed: {err.message}")
                continue
            seconds = time.monotonic() - t
            row = f"{n:>5} {len(sfm.views):>2}/{n:<2}"
            try:
                marker = marker_frame(sfm, MARKER_MM)
                m_scale, m_height = errors(marker, sfm, truth)
                m_text = (f"{100 * m_scale:+12.2f}%", f"{100 * m_height:+13.2f}%",
                          f"{100 * marker.marker_side_spread:11.1f}%")
            except RefineError:
                m_scale, m_text = float("nan"), ("   not found", "    not found", "   not found")
            try:
                board = charuco_frame(sfm, parse_charuco(args.board))
                measured = measure_board(sfm, parse_charuco(args.board))
                b_scale, b_height = errors(board, sfm, truth)
                b_text = (f"{100 * b_scale:+11.2f}%", f"{100 * b_height:+12.2f}%", f"{board.corners:>7}",
                          f"{measured.pairs:>6}", f"{100 * board.marker_side_spread:6.1f}%")
            except RefineError:
                b_scale, b_text = float("nan"), ("  not found", "   not found", "      -", "     -", "      -")
            ratio = abs(m_scale) / abs(b_scale) if b_scale == b_scale and b_scale != 0 else float("nan")
            print(f"{row} {m_text[0]} {b_text[0]} {ratio:6.1f} {m_text[1]} {b_text[1]} {b_text[2]} {b_text[3]} "
                  f"{b_text[4]} {m_text[2]} {seconds:6.0f}", flush=True)


if __name__ == "__main__":
    main()
