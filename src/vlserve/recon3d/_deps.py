"""Lazy imports of the optional heavy dependencies, with one clear error when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from vlserve.errors import EngineError

#: module name → (pip extra, package to install)
EXTRAS: dict[str, tuple[str, str]] = {
    "manifold3d": ("recon3d", "manifold3d"),
    "trimesh": ("recon3d", "trimesh"),
    "build123d": ("cad", "build123d"),
    "matplotlib": ("recon3d", "matplotlib"),
}


class MissingDependencyError(EngineError):
    """An optional dependency of :mod:`vlserve.recon3d` is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        extra, package = EXTRAS.get(module.split(".")[0], ("recon3d", module))
        raise MissingDependencyError(
            f"{module} is required for this feature: "
            f"pip install 'vlserve[{extra}]' (or pip install {package})"
        ) from err
