"""Lazy imports of refinement's optional dependencies (extra ``refine``), with one clear error."""

from __future__ import annotations

import importlib
from types import ModuleType

from vlserve.recon3d._deps import MissingDependencyError
from vlserve.recon3d._deps import require as require_recon3d

#: module name → package to install; all of them come with ``pip install 'vlserve[refine]'``
PACKAGES: dict[str, str] = {
    "pycolmap": "pycolmap",
    "cv2": "opencv-contrib-python-headless",
    "embreex": "embreex",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    if module not in PACKAGES:
        return require_recon3d(module)
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{module} is required for refinement: pip install 'vlserve[refine]' (or pip install {PACKAGES[module]})"
        ) from err
    if module == "cv2" and not hasattr(mod, "aruco"):
        raise MissingDependencyError("OpenCV without the aruco module: pip install opencv-contrib-python-headless")
    return mod
