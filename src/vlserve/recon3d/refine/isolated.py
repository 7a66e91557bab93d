"""Refinement as one call that can run in an isolated worker process (:mod:`vlserve.isolation`).

:func:`refine_photos` takes plain values in and gives plain values back (the photos as encoded
bytes, the spec and report as JSON-able dicts), so it crosses a process boundary as a pickle of
builtins. The photos are decoded **inside** the worker (OpenCV, EXIF orientation applied) and
written as PNG files under ``workdir`` for COLMAP, so no caller's bytes are parsed in the server
process and COLMAP reads one well-known format whatever the caller sent.

The caller owns ``workdir`` (and deletes it, also when the worker was killed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlserve.recon3d.refine._deps import require
from vlserve.recon3d.refine.errors import RefineError

PRELOAD = ("numpy", "scipy.optimize", "cv2", "pycolmap", "manifold3d", "trimesh",
           "vlserve.recon3d.refine.pipeline", "vlserve.recon3d.refine.isolated")
"""modules a refinement worker imports before its first job (a job's deadline starts after them)"""


def refine_photos(spec: dict[str, Any], photos: list[bytes], names: list[str], workdir: str, *,
                  marker_size_mm: float | None, known_dimension: str | None, options: Any,
                  charuco: Any = None) -> dict[str, Any]:
    """Refine ``spec`` against ``photos`` (encoded images; ``names``: their file names, ``.png``).

    ``charuco``: a :class:`~vlserve.recon3d.refine.options.CharucoSpec` instead of a marker size
    or known dimension. Returns ``{"spec": refined spec, "report": report}``, both JSON-able. Raises
    :class:`RefineError` (4000) for photos that cannot be decoded and whatever
    :func:`~vlserve.recon3d.refine.pipeline.refine` raises (too few views, no scale, a fit that
    cannot start).
    """
    from vlserve.recon3d.refine.pipeline import refine

    root = Path(workdir)
    paths = write_photos(photos, names, root / "photos")
    result = refine(spec, paths, marker_size_mm=marker_size_mm, known_dimension=known_dimension,
                    options=options, workdir=root / "sfm", charuco=charuco)
    return {"spec": plain(result.spec), "report": plain(result.report)}


def write_photos(photos: list[bytes], names: list[str], folder: Path) -> list[Path]:
    """Decode each photo and write it as ``folder/name`` (PNG, fast compression)."""
    cv2 = require("cv2")
    np = require("numpy")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for data, name in zip(photos, names, strict=True):
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RefineError(f"photo {name}: OpenCV cannot decode it for structure-from-motion")
        path = folder / name
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise RefineError(f"photo {name}: could not be written for structure-from-motion")
        paths.append(path)
    return paths


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, NaN/inf as None (JSON)."""
    return json.loads(json.dumps(value, default=_default), parse_constant=lambda _: None)


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return value.name
    raise TypeError(f"{type(value).__name__} is not JSON-able")


__all__ = ["PRELOAD", "plain", "refine_photos", "write_photos"]
