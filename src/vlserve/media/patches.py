"""Rescale, normalise and cut RGB frames into the vision encoder's flat patch layout.

The reference (transformers' ``Qwen2VLImageProcessorPil``) computes, per value::

    x32 = float32(float64(v) * rescale_factor)     # rescale: upcast, multiply, downcast
    y   = (x32 - float32(mean[c])) / float32(std[c])  # normalise in float32

and then reorders the (C, H, W) array into patches. Here the same float32
operations run on bands of ``merge_size * patch_size`` rows that stay in the CPU
cache, and each band is written once, straight into its final place in the
output (including the temporal copies), instead of five full-size passes.
The first step is replaced by an equivalent float32 form only after checking,
for all 256 byte values, that it gives bit-identical results; otherwise a
256-entry lookup table is used. The outputs are therefore bit-equal to the
reference.

Output layout, for ``grid_t`` temporal groups and a ``(grid_h, grid_w)`` patch
grid with merge size ``m``, patch size ``p``, temporal patch ``T``, ``C = 3``::

    (grid_t, grid_h/m, grid_w/m, m, m, C, T, p, p) float32
      == reshape ==> (grid_t*grid_h*grid_w, C*T*p*p)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from vlserve.media.settings import VisionSettings

__all__ = ["new_patch_buffer", "write_frame"]


@dataclass(frozen=True)
class _Normaliser:
    """How to turn uint8 into normalised float32, bit-equal to the reference."""

    divisor: np.float32 | None  # x / divisor reproduces the rescale step exactly
    multiplier: np.float32 | None  # else x * multiplier does
    table: np.ndarray  # (256,) float32, the rescale step for every byte value: the fallback
    mean: np.ndarray  # (3,) float32
    std: np.ndarray  # (3,) float32


@lru_cache(maxsize=16)
def _normaliser(rescale_factor: float, mean: tuple[float, ...], std: tuple[float, ...]) -> _Normaliser:
    values = np.arange(256, dtype=np.float64)
    reference = (values * rescale_factor).astype(np.float32)
    as32 = values.astype(np.float32)
    divisor: np.float32 | None = None
    multiplier: np.float32 | None = None
    if rescale_factor != 0:
        candidate = np.float32(1.0 / rescale_factor)
        if np.array_equal(as32 / candidate, reference):
            divisor = candidate
    if divisor is None:
        candidate = np.float32(rescale_factor)
        if np.array_equal(as32 * candidate, reference):
            multiplier = candidate
    return _Normaliser(
        divisor=divisor,
        multiplier=multiplier,
        table=reference,
        mean=np.asarray(mean, dtype=np.float32),
        std=np.asarray(std, dtype=np.float32),
    )


def new_patch_buffer(grid_t: int, grid_h: int, grid_w: int, settings: VisionSettings) -> np.ndarray:
    """An uninitialised output of shape ``(grid_t, grid_h/m, grid_w/m, m, m, 3, T, p, p)`` float32.

    ``grid_h`` and ``grid_w`` count patches and must be multiples of ``merge_size``.
    """
    m, p, t = settings.merge_size, settings.patch_size, settings.temporal_patch_size
    return np.empty((grid_t, grid_h // m, grid_w // m, m, m, 3, t, p, p), dtype=np.float32)


def write_frame(group: np.ndarray, frame: np.ndarray, slots: slice, settings: VisionSettings) -> None:
    """Normalise one RGB frame and write it into temporal ``slots`` of one group.

    ``group`` is one temporal group of a ``new_patch_buffer`` output:
    ``(grid_h/m, grid_w/m, m, m, 3, T, p, p)`` float32. ``frame`` is
    ``(grid_h*p, grid_w*p, 3)`` uint8 (already resized). An image fills every
    slot (``slice(None)``); a video frame fills its own (``slice(k, k + 1)``),
    and the padding copy of a last frame fills the rest.
    """
    m, p = settings.merge_size, settings.patch_size
    rows = m * p
    bands, cols = group.shape[0], group.shape[1]
    height, width = frame.shape[0], frame.shape[1]
    if frame.ndim != 3 or frame.shape[2] != 3 or height != bands * rows or width != cols * rows:
        raise ValueError(
            f"frame of shape {frame.shape} does not fit a {bands * rows}x{cols * rows} patch grid"
        )
    norm = _normaliser(settings.rescale_factor, tuple(settings.image_mean), tuple(settings.image_std))
    buf = np.empty((rows, width, 3), dtype=np.float32)
    flat = buf.reshape(rows, width * 3)
    # One row of per-channel constants: numpy broadcasts a (3,) vector over (..., 3) with a
    # three-element inner loop, several times slower than against a full contiguous row.
    mean_row = norm.mean[0] if _uniform(norm.mean) else np.tile(norm.mean, width)
    std_row = norm.std[0] if _uniform(norm.std) else np.tile(norm.std, width)
    dest = group[:, :, :, :, :, slots]
    for band in range(bands):
        src = frame[band * rows : (band + 1) * rows]
        if norm.divisor is not None:
            np.copyto(buf, src, casting="unsafe")
            np.divide(buf, norm.divisor, out=buf)
        elif norm.multiplier is not None:
            np.copyto(buf, src, casting="unsafe")
            np.multiply(buf, norm.multiplier, out=buf)
        else:
            np.take(norm.table, src, out=buf, mode="clip")
        np.subtract(flat, mean_row, out=flat)
        np.divide(flat, std_row, out=flat)
        # (m*p, W, C) viewed as (mh, ph, W/(m*p), mw, pw, C) -> (W/(m*p), mh, mw, C, ph, pw)
        patched = buf.reshape(m, p, cols, m, p, 3).transpose(2, 0, 3, 5, 1, 4)
        dest[band] = patched[:, :, :, :, None, :, :]


def _uniform(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))
