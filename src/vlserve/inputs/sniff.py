"""Tell images, videos and PDFs apart by their first bytes.

File names, URL extensions and declared content types are chosen by whoever
sent the data, so routing decisions use the magic numbers only. This is a
router, not a validator: the decoders (Pillow, PyAV, PDFium) still reject
anything corrupt behind a matching signature.

``sniff_container`` names the video container, so that FFmpeg is only ever
asked to open bytes with the one demuxer their signature calls for: text
formats FFmpeg would also accept as "video" (SDP descriptions, ffconcat
scripts, HLS playlists, image sequences) have no container signature and come
back ``None``.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["InputKind", "VideoContainer", "sniff_container", "sniff_kind"]

InputKind = Literal["image", "video", "pdf", "unknown"]
VideoContainer = Literal["mp4", "matroska", "avi", "mpegts"]
_TS_PACKET = 188
_TS_PACKETS_CHECKED = 5  # sync bytes at 0, 188, ... : random data passes five with odds 1 in 2^40

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


def sniff_container(data: bytes) -> VideoContainer | None:
    """The video container of ``data`` by its signature, or None when it is not a known one.

    ``"mp4"`` covers ISO base media and QuickTime (MP4, MOV, 3GP, M4V; not the still-image
    brands HEIF/AVIF), ``"matroska"`` Matroska and WebM, ``"avi"`` RIFF AVI and ``"mpegts"``
    MPEG transport streams (188-byte packets).
    """
    if sniff_kind(data) != "video":
        if len(data) >= _TS_PACKET * _TS_PACKETS_CHECKED and all(
            data[k * _TS_PACKET] == 0x47 for k in range(_TS_PACKETS_CHECKED)
        ):
            return "mpegts"
        return None
    head = data[:12]
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF"):
        return "avi"
    return "mp4"
