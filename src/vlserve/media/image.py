"""Decode user images safely into RGB Pillow images.

Formats are recognised from the content (never the file name) and limited to
the ones we support. The declared size is checked against
``max_image_pixels`` before any pixel is decoded (Pillow opens lazily), so a
small file that claims 20000x20000 pixels costs nothing. Every Pillow failure is
translated here, once, into ``ImageError`` with a message the user can act on.
"""

from __future__ import annotations

import io
import os
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlserve.errors import ImageError, PayloadTooLargeError
from vlserve.media.settings import VisionSettings

__all__ = ["SUPPORTED_IMAGE_FORMATS", "load_image", "to_rgb"]

# Pillow format names. Multi-picture JPEGs (MPO, written by many phones) come through "JPEG".
_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
SUPPORTED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_SUPPORTED_TEXT = "JPEG, PNG, WEBP, BMP, GIF (first frame) and TIFF"
_EXIF_ORIENTATION = 0x0112

ImageSource = bytes | str | os.PathLike[str] | Image.Image


def load_image(source: ImageSource, settings: VisionSettings) -> Image.Image:
    """Decode ``source`` into an RGB image with EXIF orientation applied.

    ``source`` is encoded bytes, a file path, or an already opened Pillow image.
    Transparency (alpha or palette transparency) is composited onto white.
    Raises ImageError for unsupported, corrupt, truncated or oversized images and
    PayloadTooLargeError for inputs above ``settings.max_image_bytes``.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, settings)
        try:
            source.load()
            return to_rgb(_apply_orientation(source))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ImageError("The image could not be decoded; it may be corrupt or truncated.") from err
    fp = _open_source(source, settings)
    try:
        # Lazy: only the header is read here, so the size check below precedes any decoding.
        # Animated GIF/WEBP and multi-page TIFF open on their first frame.
        image = Image.open(fp, formats=_PILLOW_FORMATS)
        _check_pixels(image.size, settings)
        image.load()
        return to_rgb(_apply_orientation(image))
    except UnidentifiedImageError as err:
        raise ImageError(f"Unsupported image format. Supported formats: {_SUPPORTED_TEXT}.") from err
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"The image declares more pixels than it is safe to decode; the limit is "
            f"{settings.max_image_pixels:,} pixels. Downscale it and try again."
        ) from err
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError) as err:
        # Pillow reports truncation, bad headers and codec failures through these.
        raise ImageError(
            "The image could not be decoded; it may be corrupt or truncated. "
            f"Supported formats: {_SUPPORTED_TEXT}."
        ) from err
    finally:
        if isinstance(source, (str, os.PathLike)):
            fp.close()


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as mode RGB, transparency composited onto white (as transformers does).

    An opaque RGB image is returned as is (no copy).
    """
    if image.mode == "RGB" and image.info.get("transparency") is None:
        return image
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        image = _high_depth_to_l(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _open_source(source: bytes | str | os.PathLike[str], settings: VisionSettings) -> IO[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > settings.max_image_bytes:
            raise PayloadTooLargeError(
                f"The image is {len(source):,} bytes; the limit is {settings.max_image_bytes:,} bytes."
            )
        if len(source) == 0:
            raise ImageError("The image is empty (0 bytes).")
        return io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
            if size > settings.max_image_bytes:
                raise PayloadTooLargeError(
                    f"The image is {size:,} bytes; the limit is {settings.max_image_bytes:,} bytes."
                )
            return open(source, "rb")  # noqa: SIM115 - closed by load_image
        except OSError as err:
            raise ImageError(f"The image file could not be read: {os.fspath(source)!s}") from err
    raise TypeError(f"load_image takes bytes, a path or a PIL image, not {type(source).__name__}")


def _check_pixels(size: tuple[int, int], settings: VisionSettings) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageError(f"The image has no pixels ({width}x{height}).")
    if width * height > settings.max_image_pixels:
        raise ImageError(
            f"The image is {width}x{height} = {width * height:,} pixels; the limit is "
            f"{settings.max_image_pixels:,} pixels. Downscale it and try again."
        )


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF orientation tag says; untouched (no copy) when it says nothing."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        return image
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit/32-bit/float greyscale scaled to 8 bits (Pillow's convert would clip, not scale)."""
    data = np.asarray(image)
    if data.dtype.kind == "f":
        finite = np.nan_to_num(data.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        scaled = finite * scale
    else:
        top = int(data.max()) if data.size else 0
        scaled = data.astype(np.float64) * (255.0 / 65535.0) if top > 255 else data.astype(np.float64)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
