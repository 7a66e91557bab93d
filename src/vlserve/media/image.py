"""Decode user images safely into RGB Pillow images, within a memory bound known from the header.

Formats are recognised from the content (never the file name) and limited to
the ones we support. Before any pixel is decoded (Pillow opens lazily) the
header is checked:

* the declared size against ``max_image_pixels``, so a small file that claims
  20000x20000 pixels costs nothing;
* a PNG too small to hold the pixels it declares (deflate cannot compress more
  than 1032:1) is refused, so a 100-byte PNG "of" 8000x8000 allocates nothing;
* a JPEG with more than 100 scans per picture (progressive files use about 10)
  is refused: every scan is another pass of libjpeg over the whole image;
* frames (GIF, WEBP, TIFF pages) are counted up to ``max_image_frames`` by
  walking headers only; only the first frame is ever decoded;
* a JPEG larger than ``image_decode_pixels`` is decoded at 1/2, 1/4 or 1/8
  scale (libjpeg's DCT scaling, ``Image.draft``), the largest that fits. The
  model resizes such images far below that anyway, and images at or under the
  cap decode exactly as before (the bit-exact tests use them);
* 16-bit, 32-bit and float greyscale is scaled to 8 bits in row blocks, so the
  conversion needs a few MiB beyond the decoded image, not 8 bytes per pixel.

``probe_image`` returns those header facts without decoding (for cost-based
admission). Every Pillow failure is translated here, once, into ``ImageError``
with a message the user can act on.
"""

from __future__ import annotations

import io
import math
import os
import struct
import weakref
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlserve.errors import ImageError, PayloadTooLargeError
from vlserve.media.settings import VisionSettings

__all__ = ["SUPPORTED_IMAGE_FORMATS", "ImageProbe", "load_image", "probe_image", "to_rgb"]

# Pillow format names. Multi-picture JPEGs (MPO, written by many phones) come through "JPEG".
_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
SUPPORTED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_SUPPORTED_TEXT = "JPEG, PNG, WEBP, BMP, GIF (first frame) and TIFF"
_EXIF_ORIENTATION = 0x0112

_MAX_JPEG_SCANS = 100  # progressive JPEGs use about 10; the format allows any number
_PNG_MAX_RATIO = 1032  # deflate's best case: a 258-byte match in at most 2 bits
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_BLOCK_PIXELS = 1 << 20  # high-depth greyscale is scaled this many pixels at a time
# Bytes per pixel of Pillow's decoded modes (what the decoded image occupies).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "La": 2, "PA": 2, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}

ImageSource = bytes | str | os.PathLike[str] | Image.Image


@dataclass(frozen=True)
class ImageProbe:
    """What an image's header declares, read without decoding a pixel.

    ``width``/``height`` are as stored (EXIF orientation may swap them on
    display, which changes no pixel count). ``frames`` counts frames or pages
    (1 for still images). ``decode_width``/``decode_height`` are the size
    ``load_image`` will decode at (smaller than the stored size only for JPEGs
    above ``image_decode_pixels``); ``decode_bytes`` bounds the decoded image's
    memory, and ``peak_bytes`` the whole of ``load_image``'s (decoded image,
    RGB result and, for transparency, the compositing copies).
    """

    format: str
    width: int
    height: int
    mode: str
    frames: int
    decode_width: int
    decode_height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decode_pixels(self) -> int:
        return self.decode_width * self.decode_height

    @property
    def decode_bytes(self) -> int:
        return self.decode_pixels * _MODE_BYTES.get(self.mode, 4)

    @property
    def peak_bytes(self) -> int:
        # decoded image + RGB result (3 B/px) + RGBA copy and white background when compositing (8 B/px)
        return self.decode_bytes + self.decode_pixels * (3 + 8)


def probe_image(data: bytes, settings: VisionSettings) -> ImageProbe:
    """The header facts of encoded image ``data``; no pixel is decoded.

    Raises what ``load_image`` would raise from the header alone: ImageError
    (unsupported format, corrupt header, too many pixels or frames, a PNG too
    small for its size) and PayloadTooLargeError (``max_image_bytes``). Cost:
    reading headers, plus one pass over frame headers for GIF and TIFF
    (stopping at ``max_image_frames``).
    """
    fp = _open_source(data, settings)
    try:
        _check_webp_canvas(fp.getvalue(), settings)
        image = Image.open(fp, formats=_PILLOW_FORMATS)
        return _checked_probe(image, fp.getvalue(), settings)
    except UnidentifiedImageError as err:
        raise ImageError(f"Unsupported image format. Supported formats: {_SUPPORTED_TEXT}.") from err
    except Image.DecompressionBombError as err:
        raise _bomb_error(settings) from err
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError, struct.error) as err:
        raise ImageError(
            f"The image header could not be read; it may be corrupt. Supported formats: {_SUPPORTED_TEXT}."
        ) from err


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
        # Lazy: only the header is read here, so the checks below precede any decoding.
        # Animated GIF/WEBP and multi-page TIFF open on their first frame.
        _check_webp_canvas(fp.getvalue(), settings)
        image = Image.open(fp, formats=_PILLOW_FORMATS)
        probe = _checked_probe(image, fp.getvalue(), settings)
        drafted = (probe.decode_width, probe.decode_height) != image.size
        if drafted:
            image.draft(image.mode, (image.width // _draft_scale(probe), image.height // _draft_scale(probe)))
        image.load()
        result = to_rgb(_apply_orientation(image))
        if result is image and not drafted:
            _remember_encoded(image, fp.getvalue())
        return result
    except UnidentifiedImageError as err:
        raise ImageError(f"Unsupported image format. Supported formats: {_SUPPORTED_TEXT}.") from err
    except Image.DecompressionBombError as err:
        raise _bomb_error(settings) from err
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError, struct.error) as err:
        # Pillow reports truncation, bad headers and codec failures through these.
        raise ImageError(
            "The image could not be decoded; it may be corrupt or truncated. "
            f"Supported formats: {_SUPPORTED_TEXT}."
        ) from err
    finally:
        fp.close()


def _bomb_error(settings: VisionSettings) -> ImageError:
    return ImageError(
        f"The image declares more pixels than it is safe to decode; the limit is "
        f"{settings.max_image_pixels:,} pixels. Downscale it and try again."
    )


def _check_webp_canvas(data: bytes, settings: VisionSettings) -> None:
    """Refuse an oversized WebP canvas from its first bytes: Pillow's WebP reader allocates the
    canvas (twice) as it opens the file, before any size check of ours could run."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return
    chunk = data[12:16]
    if chunk == b"VP8X":
        size = (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    elif chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        size = (int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF)
    elif chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    else:
        return
    _check_pixels(size, settings)


def _checked_probe(image: Image.Image, data: bytes, settings: VisionSettings) -> ImageProbe:
    """Header checks shared by ``probe_image`` and ``load_image``; ``image`` is opened, not loaded."""
    width, height = image.size
    _check_pixels(image.size, settings)
    fmt = image.format or "unknown"
    if fmt == "PNG":
        _check_png_plausible(image, data)
    frames = _count_frames(image, data, settings.max_image_frames)
    if frames > settings.max_image_frames:
        raise ImageError(
            f"The image declares more than {settings.max_image_frames:,} frames or pages; the limit is "
            f"{settings.max_image_frames:,}. Send a single frame."
        )
    if fmt in ("JPEG", "MPO") and data.count(b"\xff\xda") > _MAX_JPEG_SCANS * frames:
        # Each progressive scan makes libjpeg pass over the whole image again: thousands of scans in a
        # small file are minutes of CPU. SOS markers cannot occur inside entropy-coded data.
        raise ImageError(
            f"The JPEG has more than {_MAX_JPEG_SCANS} scans per picture; it is malformed. Re-encode it."
        )
    decode_width, decode_height = width, height
    if fmt in ("JPEG", "MPO") and width * height > settings.image_decode_pixels:  # MPO: phones' multi-picture JPEG
        scale = next(
            (s for s in (2, 4, 8) if math.ceil(width / s) * math.ceil(height / s) <= settings.image_decode_pixels),
            None,
        )
        if scale is None:
            raise ImageError(
                f"The image is {width}x{height} pixels, too large to decode even at 1/8 scale within "
                f"{settings.image_decode_pixels:,} pixels. Downscale it and try again."
            )
        decode_width, decode_height = math.ceil(width / scale), math.ceil(height / scale)
    return ImageProbe(
        format=fmt,
        width=width,
        height=height,
        mode=image.mode,
        frames=frames,
        decode_width=decode_width,
        decode_height=decode_height,
    )


def _draft_scale(probe: ImageProbe) -> int:
    return max(1, round(probe.width / probe.decode_width))


def _check_png_plausible(image: Image.Image, data: bytes) -> None:
    """Refuse a PNG whose file cannot hold its declared pixels even at deflate's best ratio."""
    # IHDR is always the first chunk: signature (8), length (4), type (4), width, height, depth, colour.
    depth, colour = data[24], data[25]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    row_bytes = 1 + math.ceil(image.width * depth * channels / 8)  # one filter byte per row
    if row_bytes * image.height > len(data) * _PNG_MAX_RATIO:
        raise ImageError(
            f"The PNG declares {image.width}x{image.height} pixels but is only {len(data):,} bytes long, too "
            "small to hold them; it is truncated or corrupt."
        )


def _count_frames(image: Image.Image, data: bytes, limit: int) -> int:
    """Frames declared, counted up to ``limit + 1`` from headers only."""
    if image.format == "GIF":
        return _gif_frames(data, limit + 1)
    if image.format == "TIFF":
        count = 1
        try:
            while count <= limit:
                image.seek(count)  # reads the next IFD's tags only, decodes nothing
                count += 1
        except EOFError:
            pass
        image.seek(0)
        return count
    # PNG (APNG) and WEBP store the count in one header field.
    return int(getattr(image, "n_frames", 1))


def _gif_frames(data: bytes, stop: int) -> int:
    """Image descriptors in a GIF, walking its blocks (no LZW decoding); stops counting at ``stop``."""
    view = memoryview(data)
    if len(view) < 13:
        return 1
    pos = 13
    flags = view[10]
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)
    count = 0
    while pos < len(view) and count < stop:
        block = view[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(view, pos + 2)
        elif block == 0x2C:  # image descriptor (+ local colour table, LZW code size, sub-blocks)
            count += 1
            if pos + 10 > len(view):
                break
            local = view[pos + 9]
            pos += 10
            if local & 0x80:
                pos += 3 << ((local & 7) + 1)
            pos = _skip_sub_blocks(view, pos + 1)
        else:
            break  # garbage after the frames: Pillow stops there too
    return max(count, 1)


def _skip_sub_blocks(view: memoryview, pos: int) -> int:
    while pos < len(view):
        size = view[pos]
        pos += 1 + size
        if size == 0:
            break
    return pos


# The encoded bytes of images that load_image returned exactly as stored, by the id of their pixel
# buffer (Pillow's ImagingCore), so that views sharing that buffer (the decoded-image cache hands
# out such views) find them too. The entry holds its image weakly and leaves with it.
_ENCODED: dict[int, tuple[weakref.ReferenceType[Image.Image], bytes]] = {}


def _remember_encoded(image: Image.Image, data: bytes) -> None:
    # Read-only: Pillow copies the pixels into a new buffer before any change (paste, draw, putpixel),
    # so an entry never vouches for pixels that differ from ``data``.
    image.readonly = 1
    key = id(image.im)

    def forget(ref: weakref.ReferenceType[Image.Image]) -> None:
        if _ENCODED.get(key, (None,))[0] is ref:
            del _ENCODED[key]

    _ENCODED[key] = (weakref.ref(image, forget), data)


def encoded_source(image: Image.Image) -> tuple[bytes, str] | None:
    """The encoded bytes ``image``'s pixels were decoded from by :func:`load_image`, and their Pillow
    format (``"PNG"``, ``"JPEG"``...), when ``image`` holds exactly that decode (opaque RGB as stored,
    no EXIF rotation, not decoded at a reduced size), itself or through a view sharing its pixels;
    the bytes passed every check of ``load_image``. None for any other image: copies, resized,
    converted, rotated or changed images have pixels of their own.

    A remote engine sends such bytes as they are instead of re-encoding the pixels."""
    try:
        core = image.im
    except (AttributeError, ValueError):  # never loaded, or closed
        return None
    entry = _ENCODED.get(id(core))
    owner = entry[0]() if entry is not None else None
    if entry is None or owner is None or owner.im is not core or owner.format is None:
        return None
    return entry[1], owner.format


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as mode RGB, transparency composited onto white (as transformers does).

    An opaque RGB image is returned as is (no copy).
    """
    if image.mode == "RGB" and image.info.get("transparency") is None:
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        image = _high_depth_to_l(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _open_source(source: bytes | str | os.PathLike[str], settings: VisionSettings) -> io.BytesIO:
    """The encoded image in memory (a path is read whole: its size was checked first)."""
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
            with open(source, "rb") as fh:
                data = fh.read(settings.max_image_bytes + 1)
        except OSError as err:
            raise ImageError(f"The image file could not be read: {os.fspath(source)!s}") from err
        if len(data) > settings.max_image_bytes:
            raise PayloadTooLargeError(f"The image is larger than the {settings.max_image_bytes:,} byte limit.")
        if not data:
            raise ImageError("The image is empty (0 bytes).")
        return io.BytesIO(data)
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
    """16-bit/32-bit/float greyscale scaled to 8 bits (Pillow's convert would clip, not scale).

    Works on blocks of rows: a float image is 4 bytes per pixel already, and whole-image float64
    temporaries would add 8 bytes per pixel several times over.
    """
    data = np.asarray(image)
    out = np.empty(data.shape, dtype=np.uint8)
    rows = max(1, _BLOCK_PIXELS // max(1, data.shape[1] if data.ndim > 1 else 1))
    blocks = [slice(start, start + rows) for start in range(0, data.shape[0], rows)]
    if data.dtype.kind == "f":
        top = max((_finite_max(data[b]) for b in blocks), default=0.0)
        scale = 255.0 if data.size and top <= 1.0 else 1.0
        for b in blocks:
            finite = np.nan_to_num(data[b].astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
            out[b] = np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    else:
        top_int = max((int(data[b].max()) for b in blocks if data[b].size), default=0)
        for b in blocks:
            block = data[b].astype(np.float64)
            scaled = block * (255.0 / 65535.0) if top_int > 255 else block
            out[b] = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _finite_max(block: np.ndarray) -> float:
    """Max of a float block as the whole-image rule saw it: NaN as 0, +inf as 1, -inf as 0."""
    if not block.size:
        return 0.0
    return float(np.nan_to_num(block.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0).max())
