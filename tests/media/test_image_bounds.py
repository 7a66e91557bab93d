"""Bounded image decoding: header facts without decoding, and memory bounds proven under a real RLIMIT_AS.

The memory tests run ``load_image`` in a worker process whose address space may grow by a fixed
amount only (``vlserve.isolation``): the code before this change needed several times more for the
same inputs and died there of MemoryError.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from vlserve.errors import ImageError
from vlserve.isolation import WorkerLimits, WorkerPool
from vlserve.media import VisionSettings
from vlserve.media.image import ImageProbe, load_image, probe_image


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def small_pool() -> Iterator[WorkerPool]:
    """One worker whose jobs may add only 160 MiB to its address space."""
    pool = WorkerPool(
        "image-test",
        1,
        WorkerLimits(wall_seconds=60, cpu_seconds=60, memory_bytes=160 << 20,
                     preload=("numpy", "PIL.Image", "PIL.JpegImagePlugin", "PIL.TiffImagePlugin",
                              "vlserve.media.image")),
    )
    yield pool
    pool.close()


def test_probe_reads_the_header_only() -> None:
    # Valid header, garbage pixel data: decoding fails, probing does not look at it.
    data = _png(640, 480, b"\x78\x9c" + b"\xff" * 4000)
    probe = probe_image(data, VisionSettings())
    assert probe == ImageProbe(format="PNG", width=640, height=480, mode="RGB", frames=1,
                               decode_width=640, decode_height=480)
    assert probe.pixels == 640 * 480 and probe.decode_bytes == 640 * 480 * 4
    with pytest.raises(ImageError):
        load_image(data, VisionSettings())


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("GIF", "P"), ("TIFF", "RGB"), ("WEBP", "RGB"),
                                           ("BMP", "RGB"), ("PNG", "RGBA")])
def test_probe_facts_match_the_decoded_image(fmt: str, mode: str) -> None:
    image = Image.new(mode, (37, 23), "orange")
    probe = probe_image(_encode(image, fmt), VisionSettings())
    assert (probe.format, probe.width, probe.height, probe.frames) == (fmt, 37, 23, 1)
    assert load_image(_encode(image, fmt), VisionSettings()).size == (37, 23)


def test_tiny_png_claiming_8000_squared_is_refused_from_its_header(small_pool: WorkerPool) -> None:
    data = _png(8000, 8000, zlib.compress(b"\x00" * 64))
    assert len(data) < 200
    for call in (probe_image, load_image):
        with pytest.raises(ImageError, match="too small to hold them") as info:
            small_pool.run(call, data, VisionSettings())
        assert info.value.code == 1001


def test_highly_compressible_png_is_still_accepted() -> None:
    # A flat 1-bit 8000x8000 picture is legitimately tiny; the plausibility bound must not refuse it.
    data = _encode(Image.new("1", (8000, 8000), 1), "PNG", optimize=True)
    assert probe_image(data, VisionSettings()).pixels == 64_000_000


def test_large_jpeg_decodes_at_reduced_scale_within_memory(small_pool: WorkerPool) -> None:
    # 8000x6000 RGB is 144 MB decoded at full size (+ the RGB copy); at 1/2 scale it is 36 MB.
    data = _encode(Image.new("RGB", (8000, 6000), (30, 140, 200)), "JPEG", quality=50)
    settings = VisionSettings(image_decode_pixels=4096 * 4096)
    probe = probe_image(data, settings)
    assert (probe.decode_width, probe.decode_height) == (4000, 3000)
    image = small_pool.run(load_image, data, settings)
    assert image.size == (4000, 3000)
    assert np.abs(np.asarray(image).astype(int) - (30, 140, 200)).max() <= 3


@pytest.mark.parametrize(("size", "cap", "expected"), [((400, 300), 400 * 300, (400, 300)),
                                                      ((400, 300), 400 * 300 - 1, (200, 150)),
                                                      ((401, 301), 30_000, (101, 76))])
def test_draft_only_above_the_cap_and_exactly_as_libjpeg_scales(size, cap, expected, mt) -> None:
    data = _encode(Image.fromarray(mt.noise_image(*size, 3)), "JPEG")
    loaded = load_image(data, VisionSettings(image_decode_pixels=cap))
    assert loaded.size == expected
    reference = Image.open(io.BytesIO(data))
    if expected != size:
        scale = round(size[0] / expected[0])
        reference.draft("RGB", (size[0] // scale, size[1] // scale))
    assert np.array_equal(np.asarray(loaded), np.asarray(reference.convert("RGB")))


def test_float_tiff_converts_within_bounded_memory(small_pool: WorkerPool) -> None:
    # 3000x3000 float32 is 36 MB; the old whole-image float64 conversion needed ~5 copies of 72 MB.
    ramp = np.tile(np.linspace(0.0, 1.0, 3000, dtype=np.float32), (3000, 1))
    ramp[0, 0] = np.nan
    data = _encode(Image.fromarray(ramp, mode="F"), "TIFF")
    image = small_pool.run(load_image, data, VisionSettings(max_image_bytes=64 << 20))
    pixels = np.asarray(image)
    assert pixels.shape == (3000, 3000, 3)
    assert pixels[5, 0, 0] == 0 and pixels[5, -1, 0] == 255 and pixels[0, 0, 0] == 0
    assert pixels[7, 1500, 1] == round(1500 / 2999 * 255)


def test_float_conversion_unchanged_on_small_images() -> None:
    values = np.array([[0.0, 0.5, 1.0], [np.inf, -np.inf, np.nan]], dtype=np.float32)
    loaded = np.asarray(load_image(_encode(Image.fromarray(values, mode="F"), "TIFF"), VisionSettings()))
    assert loaded[..., 0].tolist() == [[0, 128, 255], [255, 0, 0]]
    big = np.array([[0.0, 300.0, 12.4]], dtype=np.float32)  # above 1: taken as 0..255 and clipped
    assert np.asarray(load_image(_encode(Image.fromarray(big, mode="F"), "TIFF"), VisionSettings()))[
        0, :, 0].tolist() == [0, 255, 12]


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "PNG", "WEBP"])
def test_frame_count_is_read_and_capped(fmt: str) -> None:
    frames = [Image.new("RGB", (8, 8), (40 * k, 0, 0)) for k in range(5)]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    assert probe_image(data, VisionSettings()).frames == 5
    settings = VisionSettings(max_image_frames=4)
    for call in (probe_image, load_image):
        with pytest.raises(ImageError, match="more than 4 frames"):
            call(data, settings)
    assert load_image(data, VisionSettings(max_image_frames=5)).getpixel((1, 1)) == (0, 0, 0)


def test_gif_frame_walk_stops_at_the_cap() -> None:
    # 20000 one-pixel frames in a few hundred KB: counting must stop early, not walk them all.
    frames = [Image.new("P", (1, 1), k % 2) for k in range(3)]
    data = bytearray(_encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    tail = data.rindex(b"\x3b")
    first = data.index(b"\x2c")
    frame = bytes(data[first:tail])
    hostile = bytes(data[:first]) + frame * 20000 + b"\x3b"
    probe_settings = VisionSettings(max_image_frames=10)
    with pytest.raises(ImageError, match="more than 10 frames"):
        probe_image(hostile, probe_settings)


def test_multi_picture_jpeg_is_drafted_like_a_jpeg(mt) -> None:
    first = Image.fromarray(mt.noise_image(400, 300, 5))
    data = _encode(first, "MPO", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    probe = probe_image(data, VisionSettings(image_decode_pixels=50_000))
    assert (probe.format, probe.frames, probe.decode_width, probe.decode_height) == ("MPO", 2, 200, 150)
    assert load_image(data, VisionSettings(image_decode_pixels=50_000)).size == (200, 150)


def test_jpeg_with_thousands_of_scans_is_refused_from_its_markers(mt) -> None:
    data = _encode(Image.fromarray(mt.noise_image(64, 48, 9)), "JPEG", progressive=True)
    assert load_image(data, VisionSettings()).size == (64, 48)  # an ordinary progressive JPEG (~10 scans)
    last_scan = data.rindex(b"\xff\xda")
    hostile = data[:last_scan] + data[last_scan:-2] * 2000 + b"\xff\xd9"
    for call in (probe_image, load_image):
        with pytest.raises(ImageError, match="more than 100 scans"):
            call(hostile, VisionSettings())


def test_webp_canvas_is_checked_before_pillow_allocates_it(small_pool: WorkerPool) -> None:
    # An animated WebP whose VP8X header declares a 12000x12000 canvas: Pillow's reader would
    # allocate two 576 MB canvases while opening it; the header check refuses it first.
    frames = [Image.new("RGB", (16, 16), (k * 60, 0, 0)) for k in range(2)]
    data = bytearray(_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert data[12:16] == b"VP8X"
    data[24:27] = (12000 - 1).to_bytes(3, "little")
    data[27:30] = (12000 - 1).to_bytes(3, "little")
    for call in (probe_image, load_image):
        with pytest.raises(ImageError, match="the limit is 64,000,000 pixels"):
            small_pool.run(call, bytes(data), VisionSettings())
