"""Structure-from-motion with pycolmap: SIFT features, exhaustive matching, incremental mapping.

:func:`run_sfm` turns photos into a sparse point cloud and the poses of the cameras that
registered, in COLMAP's arbitrary frame and scale (metric scale comes from :mod:`.scale`). The
largest reconstruction is kept; photos that did not register are listed by name, and fewer than
``min_registered`` registered photos raise :class:`TooFewViewsError` (code 4000) that says how
many registered and which did not — never a crash.

Bounded work: at most ``max_photos`` photos, each down-scaled to ``max_image_size`` pixels on its
long side for feature extraction, ``max_features`` SIFT features a photo, and a time limit on
the mapper (pycolmap stops it cooperatively). Uses pycolmap 4.x (``extract_features``,
``match_exhaustive``, ``incremental_mapping``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.errors import RefineError, TooFewViewsError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MIN_PHOTO_SIDE = 64
"""px: smaller photos are refused before feature extraction (pycolmap's affine SIFT crashes the
process on images under 16 px, and nothing that small can be measured anyway)"""


@dataclass(frozen=True)
class SfmOptions:
    """Bounds and knobs of one SfM run (the CLI and service fill them from configuration)."""

    max_photos: int = 64
    max_image_size: int = 1600
    max_features: int = 4096
    min_registered: int = 3
    mapping_seconds: float = 120.0
    threads: int = 2
    single_camera: bool = True
    """all photos from one camera (same size): one shared intrinsics, a stronger bundle adjustment"""
    seed: int = 0
    affine_features: bool = True
    """affine-adapted, domain-size-pooled SIFT (CPU): more matches across the 30-90 degree
    baselines of a few photos around an object, at ~2x the extraction time"""
    guided_matching: bool = True
    """re-match along the epipolar geometry of each verified pair: more matches per pair"""
    min_pair_inliers: int = 12
    """inlier matches a pair of photos needs to count (COLMAP: 15)"""
    verbose: bool = False
    """COLMAP's own progress log on stderr (process-wide glog setting)"""


@dataclass(frozen=True)
class CameraView:
    """A registered photo: its name, intrinsics and pose (``x_cam = R x_world + t``)."""

    name: str
    cam_from_world: NDArray[np.float64]
    """(3, 4)"""
    camera: Any
    """the ``pycolmap.Camera`` (for undistorting pixel coordinates)"""

    @property
    def center(self) -> NDArray[np.float64]:
        """(3,) camera centre in the reconstruction's frame."""
        rotation, t = self.cam_from_world[:, :3], self.cam_from_world[:, 3]
        return np.asarray(-rotation.T @ t)

    def normalized(self, pixels: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, 2) undistorted normalised image coordinates of (n, 2) pixel positions."""
        return np.asarray(self.camera.cam_from_img(np.asarray(pixels, dtype=np.float64)), dtype=np.float64)


@dataclass
class SfmResult:
    """The sparse reconstruction: points, registered views, and the photos that did not register."""

    points: NDArray[np.float64]
    """(n, 3) triangulated points, reconstruction frame"""
    errors: NDArray[np.float64]
    """(n,) mean reprojection error of each point, pixels"""
    views: list[CameraView]
    unregistered: list[str]
    photos: list[Path]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    reconstruction: Any = None
    """the ``pycolmap.Reconstruction``; kept alive because each view's camera points into it"""
    observers: list[NDArray[np.int64]] = field(default_factory=list)
    """per point, the indices into ``views`` of the photos that observed it (its track): what
    the fit's visibility terms need (a point was seen, so nothing stood between it and them)"""

    @property
    def registered(self) -> list[str]:
        """Names of the photos that registered."""
        return [v.name for v in self.views]

    def summary(self) -> dict[str, Any]:
        """JSON-able: counts, names, timings."""
        return {
            "photos": len(self.photos),
            "registered": self.registered,
            "unregistered": list(self.unregistered),
            "points": int(len(self.points)),
            "mean_reprojection_error_px": float(self.errors.mean()) if len(self.errors) else None,
            "seconds": round(self.seconds, 2),
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


def run_sfm(photos: list[Path], *, options: SfmOptions | None = None, workdir: Path | None = None) -> SfmResult:
    """Reconstruct ``photos``: sparse points plus registered camera poses (raises RefineError)."""
    options = options or SfmOptions()
    photos = [Path(p) for p in photos]
    if len(photos) < options.min_registered:
        raise TooFewViewsError(
            f"{len(photos)} photos given; structure-from-motion needs at least {options.min_registered}",
            registered=[],
            unregistered=[p.name for p in photos],
        )
    if len(photos) > options.max_photos:
        raise RefineError(f"{len(photos)} photos given; at most {options.max_photos} are allowed")
    for p in photos:
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            raise RefineError(f"{p.name}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
        _check_size(p)
    pycolmap = require("pycolmap")
    pycolmap.logging.minloglevel = 0 if options.verbose else 2
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="vlserve-sfm-")) if workdir is None else workdir
    try:
        return _reconstruct(pycolmap, photos, options, root)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _check_size(path: Path) -> None:
    """:class:`RefineError` (4000) for a photo that cannot be read or is under ``MIN_PHOTO_SIDE``
    px on a side (only the header is read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise RefineError(f"{path.name}: cannot be read as an image ({type(err).__name__})") from None
    if min(width, height) < MIN_PHOTO_SIDE:
        raise RefineError(f"{path.name}: {width}x{height} px is too small for structure-from-motion "
                          f"(at least {MIN_PHOTO_SIDE} px a side; photos of 800 px or more work best)")


def _reconstruct(pycolmap: Any, photos: list[Path], options: SfmOptions, root: Path) -> SfmResult:
    start = time.perf_counter()
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    names: dict[str, Path] = {}
    for i, p in enumerate(photos):
        # our own names: user file names may repeat or hold characters COLMAP dislikes
        name = f"{i:03d}{p.suffix.lower()}"
        shutil.copyfile(p, images / name)
        names[name] = p
    database = root / "database.db"
    database.unlink(missing_ok=True)
    pycolmap.set_random_seed(options.seed)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = options.max_image_size
    extraction.num_threads = options.threads
    extraction.sift.max_num_features = options.max_features
    if options.affine_features:
        extraction.sift.estimate_affine_shape = True
        extraction.sift.domain_size_pooling = True
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pycolmap.extract_features(
        database,
        images,
        camera_mode=pycolmap.CameraMode.SINGLE if options.single_camera else pycolmap.CameraMode.AUTO,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    timings["features"] = time.perf_counter() - t
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = options.threads
    matching.guided_matching = options.guided_matching
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = options.min_pair_inliers
    t = time.perf_counter()
    pycolmap.match_exhaustive(
        database, matching_options=matching, verification_options=verification, device=pycolmap.Device.cpu
    )
    timings["matching"] = time.perf_counter() - t
    pipeline = pycolmap.IncrementalPipelineOptions()
    pipeline.num_threads = options.threads
    pipeline.random_seed = options.seed
    pipeline.min_model_size = options.min_registered
    pipeline.max_runtime_seconds = int(max(1, options.mapping_seconds))
    pipeline.multiple_models = False
    # a little more permissive than COLMAP's defaults, made for hundreds of photos: a user's 8-16
    # photos around an object are 20-45 degrees apart and share fewer matches
    pipeline.mapper.init_min_num_inliers = 30
    pipeline.mapper.init_min_tri_angle = 4.0
    pipeline.mapper.abs_pose_min_num_inliers = 15
    pipeline.mapper.abs_pose_min_inlier_ratio = 0.15
    t = time.perf_counter()
    reconstructions = pycolmap.incremental_mapping(database, images, root / "sparse", options=pipeline)
    timings["mapping"] = time.perf_counter() - t
    best = max(reconstructions.values(), key=lambda r: r.num_reg_images(), default=None)
    registered_names = set() if best is None else {best.image(i).name for i in best.reg_image_ids()}
    unregistered = [names[n].name for n in sorted(names) if n not in registered_names]
    if best is None or len(registered_names) < options.min_registered:
        raise TooFewViewsError(
            f"only {len(registered_names)} of {len(photos)} photos registered in structure-from-motion "
            f"(at least {options.min_registered} needed): take more overlapping photos around the object, "
            "with texture in view",
            registered=[names[n].name for n in sorted(registered_names)],
            unregistered=unregistered,
        )
    views: list[CameraView] = []
    view_index: dict[int, int] = {}
    for image_id in sorted(best.reg_image_ids(), key=lambda i: best.image(i).name):
        image = best.image(image_id)
        matrix = np.asarray(image.cam_from_world().matrix(), dtype=np.float64)
        view_index[image_id] = len(views)
        views.append(CameraView(names[image.name].name, matrix, best.cameras[image.camera_id]))
    ids = list(best.point3D_ids())
    points = np.array([best.point3D(i).xyz for i in ids], dtype=np.float64).reshape(-1, 3)
    errors = np.array([best.point3D(i).error for i in ids], dtype=np.float64)
    observers = [
        np.unique([view_index[e.image_id] for e in best.point3D(i).track.elements if e.image_id in view_index]).astype(
            np.int64
        )
        for i in ids
    ]
    return SfmResult(points, errors, views, unregistered, photos, time.perf_counter() - start, timings, best, observers)
