"""Qwen3-VL's relative coordinates (0–1000 of the image's width and height) to pixels of the
original image, for every task that answers with places in an image."""

from __future__ import annotations

from collections.abc import Sequence

#: Qwen3-VL writes points and boxes in 0–1000 coordinates relative to the image, whatever its size.
RELATIVE_SCALE = 1000


def point_to_pixels(point: Sequence[float], size: tuple[int, int]) -> list[int]:
    """``[x, y]`` in 0–1000 → the pixel it falls on in an image of ``size`` ``(width, height)``:
    rounded, and kept inside the image (1000 is the last pixel, not one past it)."""
    width, height = size
    x, y = (_clamp(v) for v in point[:2])
    return [min(width - 1, round(x * width / RELATIVE_SCALE)), min(height - 1, round(y * height / RELATIVE_SCALE))]


def box_to_pixels(box: Sequence[float], size: tuple[int, int]) -> list[int]:
    """``[x1, y1, x2, y2]`` in 0–1000 → pixel edges ``[left, top, right, bottom]`` of an image of
    ``size``; corners given the wrong way round are swapped (it is the same box)."""
    width, height = size
    x1, y1, x2, y2 = (_clamp(v) for v in box[:4])
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    return [round(x1 * width / RELATIVE_SCALE), round(y1 * height / RELATIVE_SCALE),
            round(x2 * width / RELATIVE_SCALE), round(y2 * height / RELATIVE_SCALE)]


def _clamp(value: float) -> float:
    return min(float(RELATIVE_SCALE), max(0.0, float(value)))
