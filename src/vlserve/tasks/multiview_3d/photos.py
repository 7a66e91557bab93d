"""Photo checks before the model sees the views: size, blur and exposure, judged on the object.

Product photos are usually taken against a plain backdrop, often white. Judged over the whole
frame, a white backdrop reads as "over-exposed" and a small sharp object on a flat backdrop as
"blurred". So each view is first split into object and background: the background colour is
estimated from a strip along the image border, pixels that differ from it clearly are the object
(cleaned with a small morphological open/close, holes filled: a highlight inside the object is
the object's even when it is as white as the backdrop). Exposure is measured on the object's pixels and
sharpness on the object's bounding box. When no plain backdrop is found (a cluttered scene, or an
object filling the frame) the whole image is judged, as before.

numpy and Pillow (scipy for filling holes): this runs for every request of the task, in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

MAX_SIDE = 1024
"""seed 000: keep views within 1024×1024"""
BLUR_THRESHOLD = 60.0
"""variance of the Laplacian over the object below this reads as blurred"""
OVEREXPOSED_FRACTION = 0.25
"""share of the object's pixels at ≥ 250 above this reads as glare or over-exposure"""
UNDEREXPOSED_FRACTION = 0.5
"""share of the object's pixels at ≤ 8 above this reads as too dark"""
BORDER_FRACTION = 0.04
"""width of the border strip the background colour is estimated from (share of the short side)"""
BACKGROUND_SPREAD = 18.0
"""a border whose pixels differ from their median by more than this (90th percentile) is not plain"""
FOREGROUND_DISTANCE = 30.0
"""least colour distance from the background for a pixel to count as the object"""
SEGMENT_SIDE = 256
"""object and backdrop are told apart on a copy this size (px, longest side)"""
MIN_OBJECT, MAX_OBJECT = 0.01, 0.97
"""object shares outside this range mean the split failed: judge the whole frame instead"""


@dataclass
class ObjectRegion:
    """Where the object is in one view."""

    mask: NDArray[np.bool_]
    """(h, w) True on the object"""
    found: bool
    """False when no plain background was found (``mask`` is then the whole frame)"""

    @property
    def share(self) -> float:
        """The object's share of the frame."""
        return float(self.mask.mean())

    def box(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) bounds of the object, exclusive ends."""
        rows, cols = np.flatnonzero(self.mask.any(axis=1)), np.flatnonzero(self.mask.any(axis=0))
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def object_region(image: Image.Image) -> ObjectRegion:
    """Split ``image`` into object and plain background (see the module docstring).

    The split is made on a copy at most :data:`SEGMENT_SIDE` px on a side (milliseconds at any
    size) and scaled back to the image's own size.
    """
    if max(image.size) <= SEGMENT_SIDE:
        return _object_region(image)
    scale = SEGMENT_SIDE / max(image.size)
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    region = _object_region(small)
    mask = Image.fromarray(region.mask.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)
    return ObjectRegion(np.asarray(mask) > 127, region.found)


def _object_region(image: Image.Image) -> ObjectRegion:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    whole = ObjectRegion(np.ones((h, w), dtype=bool), found=False)
    strip = max(1, round(BORDER_FRACTION * min(h, w)))
    if min(h, w) < 4 * strip + 4:
        return whole
    border = np.concatenate([rgb[:strip].reshape(-1, 3), rgb[-strip:].reshape(-1, 3),
                             rgb[:, :strip].reshape(-1, 3), rgb[:, -strip:].reshape(-1, 3)])
    background = np.median(border, axis=0)
    border_distance = np.abs(border - background).max(axis=1)
    if float(np.percentile(border_distance, 90)) > BACKGROUND_SPREAD:
        return whole  # the border is not one plain colour: a scene, not a backdrop
    distance = np.abs(rgb - background).max(axis=2)
    threshold = max(FOREGROUND_DISTANCE, 3.0 * float(np.percentile(border_distance, 99)))
    mask = _fill_holes(_open_close(distance > threshold, size=3))
    share = float(mask.mean())
    if not MIN_OBJECT <= share <= MAX_OBJECT:
        return whole
    return ObjectRegion(mask, found=True)


def _open_close(mask: NDArray[np.bool_], size: int) -> NDArray[np.bool_]:
    # opening drops speckle noise, closing fills small gaps in the object (Pillow's rank filters)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    img = img.filter(ImageFilter.MinFilter(size)).filter(ImageFilter.MaxFilter(size))
    img = img.filter(ImageFilter.MaxFilter(size)).filter(ImageFilter.MinFilter(size))
    return np.asarray(img) > 127


def _fill_holes(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    # A highlight inside the object can match the backdrop's colour; whatever the backdrop does not
    # reach from the border is the object's. scipy comes with the 'recon3d' extra that builds the
    # model; without it the mask is used as found.
    try:
        from scipy import ndimage
    except ImportError:  # pragma: no cover - the task needs the recon3d extra anyway
        return mask
    filled: NDArray[np.bool_] = ndimage.binary_fill_holes(mask)
    return filled


def sharpness(gray: NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian of a (h, w) grey image: low when blurred."""
    lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    return float(lap.var())


@dataclass
class ViewQuality:
    """The measurements behind the warnings, for one view."""

    sharpness: float
    bright_share: float
    dark_share: float
    object_share: float
    object_found: bool


def judge(image: Image.Image) -> ViewQuality:
    """Measure sharpness and exposure of the object in ``image``."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    region = object_region(image)
    top, bottom, left, right = region.box()
    # a margin of 2 px keeps the object's silhouette edge, which is part of how sharp it looks
    top, left = max(0, top - 2), max(0, left - 2)
    bottom, right = min(gray.shape[0], bottom + 2), min(gray.shape[1], right + 2)
    crop = gray[top:bottom, left:right]
    sharp = sharpness(crop) if min(crop.shape) >= 3 else float("inf")
    pixels = gray[region.mask]
    return ViewQuality(
        sharpness=sharp,
        bright_share=float((pixels >= 250).mean()),
        dark_share=float((pixels <= 8).mean()),
        object_share=region.share,
        object_found=region.found,
    )


@dataclass
class PhotoCheck:
    """The views as the model will see them, and what the user should know about them."""

    images: list[Image.Image]
    warnings: list[str] = field(default_factory=list)
    quality: list[ViewQuality] = field(default_factory=list)


def check_photos(images: list[Image.Image], labels: list[str] | None = None) -> PhotoCheck:
    """Downscale views above :data:`MAX_SIDE` px and warn about blurred or badly exposed objects."""
    out = PhotoCheck([])
    for i, image in enumerate(images):
        name = f"view {i + 1}" + (f" ({labels[i]})" if labels and i < len(labels) and labels[i] else "")
        if max(image.size) > MAX_SIDE:
            scale = MAX_SIDE / max(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                 Image.Resampling.LANCZOS)
            out.warnings.append(f"{name} was downscaled to {image.width}x{image.height} (views are kept "
                                f"within {MAX_SIDE} px)")
        quality = judge(image)
        what = "the object" if quality.object_found else "the photo"
        if quality.sharpness < BLUR_THRESHOLD:
            out.warnings.append(f"{name}: {what} looks blurred; a sharper photo gives better dimensions")
        if quality.bright_share > OVEREXPOSED_FRACTION:
            out.warnings.append(f"{name}: {what} looks over-exposed or has strong glare; avoid direct light "
                                "on the object")
        elif quality.dark_share > UNDEREXPOSED_FRACTION:
            out.warnings.append(f"{name}: {what} looks too dark; add light or expose longer")
        out.images.append(image)
        out.quality.append(quality)
    return out
