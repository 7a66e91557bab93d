"""sniff_kind on real encoded samples (Pillow) and known container headers."""

from __future__ import annotations

import pytest

from tests.inputs.helpers import encode, make_pdf
from vlserve.inputs import sniff_container, sniff_kind


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_images_encoded_by_pillow(fmt: str) -> None:
    assert sniff_kind(encode(fmt)) == "image"


def test_pdf_including_leading_junk() -> None:
    pdf = make_pdf([(100, 100)])
    assert sniff_kind(pdf) == "pdf"
    assert sniff_kind(b"\xef\xbb\xbf\r\n" + pdf) == "pdf"


@pytest.mark.parametrize(
    "header",
    [
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2avc1mp41",  # MP4
        b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ",  # QuickTime MOV
        b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat",  # older MOV without ftyp
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01webm",  # WebM / Matroska EBML
        b"RIFF\x00\x10\x00\x00AVI LIST",  # AVI
    ],
)
def test_video_containers(header: bytes) -> None:
    assert sniff_kind(header + b"\x00" * 64) == "video"


def test_still_image_brands_in_iso_containers_are_images() -> None:
    assert sniff_kind(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf") == "image"
    assert sniff_kind(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == "image"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"BM but not a bitmap header at all", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\xff\xd8"],
)
def test_everything_else_is_unknown(data: bytes) -> None:
    assert sniff_kind(data) == "unknown"


def test_declared_names_do_not_matter() -> None:
    # Only bytes are looked at; a PNG is an image whatever it claims to be.
    assert sniff_kind(encode("PNG")) == "image"
    assert sniff_kind(b"<svg xmlns='http://www.w3.org/2000/svg'/>") == "unknown"


@pytest.mark.parametrize(
    ("header", "container"),
    [
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  ", "mp4"),
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat", "mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01webm", "matroska"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "avi"),
    ],
)
def test_video_container_names(header: bytes, container: str) -> None:
    assert sniff_container(header + b"\x00" * 64) == container


def test_transport_stream_needs_repeated_sync_bytes() -> None:
    packet = b"\x47" + b"\x00" * 187
    assert sniff_container(packet * 5) == "mpegts"
    assert sniff_container(packet * 4 + b"\x00" * 188) is None


@pytest.mark.parametrize(
    "data",
    [
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nm=video 5004 RTP/AVP 96\r\n",  # SDP
        b"ffconcat version 1.0\nfile 'a.mp4'\n",
        b"#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1/a.ts\n",
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",  # a still image in an ISO container
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        b"",
    ],
    ids=["sdp", "ffconcat", "hls", "avif", "png", "empty"],
)
def test_text_formats_and_images_have_no_container(data: bytes) -> None:
    assert sniff_container(data) is None
