"""Checks of what was written, not of what was meant: a binary STL read back as float32.

The compiled solid is watertight in float64, but STL stores float32: on a 10 km model a 10 µm
hole is below float32's resolution, its vertices merge and the written mesh has degenerate or
doubled triangles. So watertightness is reported for the file, as any other program reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlserve.recon3d.compiler import is_watertight

STL_HEADER = 80
STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attr", "<u2")])


def read_binary_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) float32 vertices merged by exact equality and (m, 3) int64 faces of a binary STL."""
    data = path.read_bytes()
    count = int(np.frombuffer(data, dtype="<u4", count=1, offset=STL_HEADER)[0])
    records = np.frombuffer(data, dtype=STL_RECORD, count=count, offset=STL_HEADER + 4)
    corners = records["vertices"].reshape(-1, 3)
    vertices, inverse = np.unique(corners, axis=0, return_inverse=True)
    return vertices, inverse.reshape(-1, 3).astype(np.int64)


def stl_is_watertight(path: Path) -> bool:
    """True when the STL file, read back, is a closed 2-manifold without degenerate triangles."""
    _vertices, faces = read_binary_stl(path)
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    return bool(len(faces)) and not bool(degenerate.any()) and is_watertight(faces)
