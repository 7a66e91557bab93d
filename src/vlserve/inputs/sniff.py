"""Tell images, videos and PDFs apart by their first bytes.

File names, URL extensions and declared content types are chosen by whoever
sent the data, so routing decisions use the magic numbers only. This is a
router, not a validator: the decoders (Pillow, PyAV, PDFium) still reject
anything corrupt behind a matching signature.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["InputKind", "sniff_kind"]

InputKind = Literal["image", "video", "pdf", "unknown"]

# ISO base media (MP4/MOV/3GP) brands that hold still images: HEIF/HEIC/AVIF.
_IMAGE_BRANDS = frozenset({b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1"})
# QuickTime files may start with one of these atoms instead of "ftyp".
_QUICKTIME_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"pnot"})
# BITMAPINFOHEADER and its variants; checking it keeps "BM"-prefixed text from passing as BMP.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_PDF_SEARCH_WINDOW = 1024  # readers accept leading junk before %PDF- within the first KiB


def sniff_kind(data: bytes) -> InputKind:
    """Classify ``data`` as ``"image"``, ``"video"``, ``"pdf"`` or ``"unknown"`` by magic numbers."""
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "image"  # JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image"
    if head.startswith(b"RIFF") and len(head) >= 12:
        form = head[8:12]
        if form == b"WEBP":
            return "image"
        if form == b"AVI ":
            return "video"
        return "unknown"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"  # TIFF
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video"  # EBML: Matroska / WebM
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "image" if head[8:12] in _IMAGE_BRANDS else "video"
    if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
        return "video"
    if b"%PDF-" in data[:_PDF_SEARCH_WINDOW]:
        return "pdf"
    return "unknown"
