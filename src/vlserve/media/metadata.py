"""Image metadata removal for privacy mode: EXIF (GPS, camera serials, timestamps), XMP, IPTC and
comments go; the pixels stay as they were.

* **JPEG** is rewritten segment by segment without decoding: APP1 (EXIF, XMP), APP3–APP13 (IPTC,
  Photoshop), APP15, COM and anything after the end-of-image marker (MPF thumbnails, vendor trailers,
  which carry their own EXIF) are dropped; JFIF (APP0), ICC profiles (APP2 ``ICC_PROFILE``), Adobe's
  colour-transform flag (APP14), the tables and the entropy-coded scans are copied byte for byte, so
  the decoded pixels are identical. A non-default orientation is kept as a fresh EXIF block holding
  that one tag: the picture must not turn on its side.
* **PNG** is rewritten chunk by chunk without decoding: text (tEXt, zTXt, iTXt), eXIf and tIME
  chunks are dropped, and so is any chunk not known to describe pixels (``_PNG_KEEP``); image data,
  palettes, transparency, colour information and animation chunks are copied byte for byte. A
  non-default orientation is kept as an eXIf chunk holding that one tag.
* **Every other format** is decoded by Pillow, turned upright by its orientation tag, and re-encoded
  as PNG (lossless) with no text chunks and no EXIF; only the first frame of an animation is kept
  (the only one the service reads).

Call it only on bytes whose header already passed the pixel limits (``probe_image``): a non-JPEG
is decoded here.
"""

from __future__ import annotations

import io
import zlib

from PIL import Image, ImageOps

from vlserve.errors import ImageError

__all__ = ["strip_metadata"]

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0–7 carry no length
_ORIENTATION = 0x0112
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that describe the pixels (PNG 3rd edition, APNG); everything else is metadata or unknown.
_PNG_KEEP = frozenset({b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT",
                       b"sRGB", b"cICP", b"mDCV", b"cLLI", b"bKGD", b"hIST", b"pHYs", b"sPLT", b"acTL",
                       b"fcTL", b"fdAT"})


def strip_metadata(data: bytes) -> bytes:
    """``data`` without metadata (see the module docstring); raises ImageError if unreadable."""
    if data[:3] == b"\xff\xd8\xff":
        return _strip_jpeg(data)
    if data[:8] == _PNG_SIGNATURE:
        return _strip_png(data)
    return _reencode_png(data)


def _keep(marker: int, payload: bytes) -> bool:
    if marker == 0xE2:  # APP2: ICC profiles stay; MPF (an index of embedded images) goes
        return payload.startswith(b"ICC_PROFILE\x00")
    return not (0xE1 <= marker <= 0xEF and marker != 0xEE) and marker != 0xFE


def _strip_jpeg(data: bytes) -> bytes:
    out = bytearray(b"\xff\xd8")
    orientation, pending = _orientation(data), b""
    if orientation not in (None, 1):
        exif = Image.Exif()
        exif[_ORIENTATION] = orientation
        block = exif.tobytes()
        pending = b"\xff\xe1" + (len(block) + 2).to_bytes(2, "big") + block
    pos, n, in_scan = 2, len(data), False
    while pos < n:
        if in_scan:
            # Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or a restart marker inside it.
            nxt = data.find(b"\xff", pos)
            if nxt < 0 or nxt + 1 >= n:
                raise ImageError("The JPEG image is truncated (no end-of-image marker).")
            follow = data[nxt + 1]
            if follow == 0x00 or 0xD0 <= follow <= 0xD7 or follow == 0xFF:
                out += data[pos : nxt + 1 if follow == 0xFF else nxt + 2]
                pos = nxt + 1 if follow == 0xFF else nxt + 2
                continue
            out += data[pos:nxt]
            pos, in_scan = nxt, False
            continue
        if data[pos] != 0xFF:
            raise ImageError("The JPEG image is corrupt (a segment does not start with a marker).")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if pending and marker != 0xE0:  # after JFIF's APP0, which must come first
            out += pending
            pending = b""
        if marker == _EOI:
            out += b"\xff\xd9"
            return bytes(out)  # whatever follows (thumbnails, trailers) is left behind
        if marker in _STANDALONE or marker == _SOI:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > n:
            raise ImageError("The JPEG image is truncated.")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > n:
            raise ImageError("The JPEG image is corrupt (a segment's length runs past the file).")
        segment = data[pos : pos + length]
        if _keep(marker, segment[2:]):
            out += bytes((0xFF, marker)) + segment
        pos += length
        in_scan = marker == _SOS
    raise ImageError("The JPEG image is truncated (no end-of-image marker).")


def _strip_png(data: bytes) -> bytes:
    out = bytearray(_PNG_SIGNATURE)
    orientation = _orientation(data)
    pos, n = 8, len(data)
    while pos + 12 <= n:
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > n:
            break
        if kind == b"IDAT" and orientation not in (None, 1):  # eXIf must come before the image data
            exif = Image.Exif()
            exif[_ORIENTATION] = orientation
            block = exif.tobytes()[6:]  # PNG's eXIf holds the TIFF structure without the "Exif\0\0" header
            out += len(block).to_bytes(4, "big") + b"eXIf" + block
            out += zlib.crc32(b"eXIf" + block).to_bytes(4, "big")
            orientation = None
        if kind in _PNG_KEEP:
            out += data[pos:end]
        pos = end
        if kind == b"IEND":
            return bytes(out)  # whatever follows is left behind
    raise ImageError("The PNG image is truncated (no IEND chunk).")


def _orientation(data: bytes) -> int | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(_ORIENTATION)
    except Exception:  # noqa: BLE001 - a broken EXIF block just has no orientation to keep
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


def _reencode_png(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            clean = upright.copy()
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for corrupt files
        raise ImageError("The image could not be read to remove its metadata.") from err
    clean.info.clear()
    keep = {"transparency": image.info["transparency"]} if "transparency" in image.info else {}
    buffer = io.BytesIO()
    try:
        clean.save(buffer, format="PNG", **keep)
    except (OSError, ValueError):  # modes PNG cannot hold (CMYK, some I;16 variants)
        buffer = io.BytesIO()
        clean.convert("RGBA" if "A" in clean.getbands() else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()
