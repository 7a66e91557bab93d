"""load_image: formats sniffed from content, orientation, transparency, and every failure as ImageError."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from vlserve.errors import ImageError, PayloadTooLargeError
from vlserve.media import VisionSettings, load_image


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture
def photo(mt: SimpleNamespace) -> Image.Image:
    return Image.fromarray(mt.noise_image(40, 30, 1))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_formats_round_trip(fmt: str, photo: Image.Image, settings: VisionSettings) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    data = _encode(photo, fmt, **params)
    loaded = load_image(data, settings)
    assert loaded.mode == "RGB" and loaded.size == photo.size
    if fmt in ("PNG", "BMP", "TIFF", "WEBP"):  # lossless
        assert np.array_equal(np.asarray(loaded), np.asarray(photo))
    else:  # lossy (JPEG) or palette (GIF): what Pillow itself decodes
        assert np.array_equal(np.asarray(loaded), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_path_and_pil_sources(tmp_path: Path, photo: Image.Image, settings: VisionSettings) -> None:
    path = tmp_path / "photo.jpg"  # the extension lies: PNG bytes
    path.write_bytes(_encode(photo, "PNG"))
    assert np.array_equal(np.asarray(load_image(path, settings)), np.asarray(photo))
    assert np.array_equal(np.asarray(load_image(str(path), settings)), np.asarray(photo))
    assert load_image(photo.convert("L"), settings).mode == "RGB"


def test_animated_gif_gives_first_frame(settings: VisionSettings) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    loaded = load_image(data, settings)
    assert loaded.getpixel((4, 4)) == (255, 0, 0)


def test_rgba_transparency_composited_on_white(settings: VisionSettings) -> None:
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    image.putpixel((1, 0), (0, 0, 0, 128))  # half transparent black
    loaded = load_image(_encode(image, "PNG"), settings)
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert np.asarray(loaded)[0, 1, 0] in (126, 127)
    assert loaded.getpixel((2, 2)) == (255, 0, 0)


def test_palette_transparency_composited_on_white(settings: VisionSettings) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    loaded = load_image(_encode(image, "PNG", transparency=0), settings)
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert loaded.getpixel((3, 3)) == (0, 255, 0)


def test_rgb_colour_key_transparency(settings: VisionSettings) -> None:
    image = Image.new("RGB", (4, 4), (10, 20, 30))
    image.putpixel((0, 0), (1, 2, 3))
    loaded = load_image(_encode(image, "PNG", transparency=(1, 2, 3)), settings)  # tRNS colour key
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 1)) == (10, 20, 30)


def test_exif_orientation_6_rotates(settings: VisionSettings) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(_encode(image, "JPEG", exif=exif.tobytes(), quality=95), settings)
    assert loaded.size == (20, 40)
    r, _, b = np.asarray(loaded)[5, 10].tolist()  # top after rotating CW: the former left half
    assert r > 200 and b < 60


def test_sixteen_bit_greyscale_is_scaled(settings: VisionSettings) -> None:
    data = np.full((4, 4), 65535, dtype=np.uint16)
    data[0, 0] = 0
    loaded = load_image(_encode(Image.fromarray(data), "PNG"), settings)
    assert loaded.getpixel((1, 1)) == (255, 255, 255) and loaded.getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("payload", "hint"),
    [
        (b"\x00\x01garbage" * 20, "Supported formats"),
        (b"hello, this is a text file\n" * 10, "Supported formats"),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>',
            "Supported formats",
        ),
    ],
    ids=["garbage", "text", "svg"],
)
def test_unsupported_content_is_image_error(payload: bytes, hint: str, settings: VisionSettings) -> None:
    with pytest.raises(ImageError, match=hint) as info:
        load_image(payload, settings)
    assert info.value.code == 1001
    assert "JPEG" in info.value.message and "PNG" in info.value.message


def test_truncated_and_corrupt_images(photo: Image.Image, settings: VisionSettings) -> None:
    jpeg = _encode(photo, "JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(jpeg[: len(jpeg) // 2], settings)
    png = bytearray(_encode(photo, "PNG"))
    png[60:80] = b"\xff" * 20  # inside the IDAT stream
    with pytest.raises(ImageError):
        load_image(bytes(png), settings)
    with pytest.raises(ImageError):
        load_image(b"", settings)


def test_missing_file(tmp_path: Path, settings: VisionSettings) -> None:
    with pytest.raises(ImageError, match="could not be read"):
        load_image(tmp_path / "nope.png", settings)


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking 1-bit PNG whose header declares ``width x height``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [9000, 20000])
def test_decompression_bomb_refused_before_decoding(side: int, settings: VisionSettings) -> None:
    # 9000^2 = 81M pixels: refused by our limit; 20000^2 = 400M: Pillow's own bomb error, translated.
    data = _png_claiming(side, side)
    assert len(data) < 200
    with pytest.raises(ImageError, match="the limit is 64,000,000 pixels"):
        load_image(data, settings)


def test_decompression_bomb_beyond_our_limit_is_still_image_error() -> None:
    with pytest.raises(ImageError):
        load_image(_png_claiming(30000, 30000), VisionSettings(max_image_pixels=2_000_000_000))


def test_byte_limit(photo: Image.Image) -> None:
    with pytest.raises(PayloadTooLargeError):
        load_image(_encode(photo, "PNG"), VisionSettings(max_image_bytes=100))
