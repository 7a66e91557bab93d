"""strip_metadata: EXIF/GPS, XMP, comments and trailers go; pixels and orientation stay."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps, PngImagePlugin

from vlserve.errors import ImageError
from vlserve.media.metadata import strip_metadata

GPS_IFD, MAKE, ORIENTATION = 0x8825, 0x010F, 0x0112
PIXELS = np.random.default_rng(7).integers(0, 255, (40, 60, 3), dtype=np.uint8)


def exif(orientation: int = 1) -> Image.Exif:
    data = Image.Exif()
    data[MAKE] = "SecretCam"
    data[ORIENTATION] = orientation
    data.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    return data


def jpeg(**save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_loses_exif_gps_xmp_and_comments_but_not_a_pixel(progressive: bool) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>SecretPlace</rdf:RDF></x:xmpmeta>'
    original = jpeg(exif=exif(), comment=b"shot at SecretPlace", xmp=xmp, progressive=progressive)
    assert b"SecretCam" in original and b"SecretPlace" in original
    clean = strip_metadata(original)
    assert b"SecretCam" not in clean and b"SecretPlace" not in clean
    image = Image.open(io.BytesIO(clean))
    assert not dict(image.getexif().get_ifd(GPS_IFD)) and MAKE not in image.getexif()
    assert np.array_equal(decoded(clean), decoded(original))  # the scans were copied, not re-encoded


def test_jpeg_orientation_is_kept_alone() -> None:
    clean = strip_metadata(jpeg(exif=exif(orientation=6)))
    kept = Image.open(io.BytesIO(clean)).getexif()
    assert dict(kept) == {ORIENTATION: 6}
    assert Image.open(io.BytesIO(clean)).info.get("jfif") is not None  # JFIF's APP0 still first


def test_jpeg_trailer_after_end_of_image_is_dropped() -> None:
    original = jpeg() + b"MPF-thumbnail with SecretCam EXIF"
    clean = strip_metadata(original)
    assert clean.endswith(b"\xff\xd9") and b"SecretCam" not in clean


def test_truncated_jpeg_is_an_image_error() -> None:
    with pytest.raises(ImageError):
        strip_metadata(jpeg()[:-200])


def test_png_loses_text_and_exif_chunks_but_keeps_pixels_and_orientation() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "SecretPlace")
    info.add_itxt("Comment", "SecretPlace again", zip=True)
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "PNG", pnginfo=info, exif=exif(orientation=6))
    clean = strip_metadata(buffer.getvalue() + b"trailing SecretCam")
    assert b"SecretPlace" not in clean and b"SecretCam" not in clean
    image = Image.open(io.BytesIO(clean))
    assert image.format == "PNG" and dict(image.getexif()) == {ORIENTATION: 6} and not image.text
    assert np.array_equal(np.asarray(image.convert("RGB")), PIXELS)  # the same image data, not re-encoded
    upright = ImageOps.exif_transpose(image)
    assert np.array_equal(np.asarray(upright.convert("RGB")), np.rot90(PIXELS, k=-1))  # still turns as tag 6 says


def test_png_without_orientation_gets_no_exif() -> None:
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "PNG", exif=exif())
    image = Image.open(io.BytesIO(strip_metadata(buffer.getvalue())))
    assert not dict(image.getexif()) and np.array_equal(np.asarray(image), PIXELS)


def test_webp_becomes_a_clean_lossless_png() -> None:  # other formats are re-encoded
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, "WEBP", lossless=True, exif=exif())
    clean = strip_metadata(buffer.getvalue())
    assert b"SecretCam" not in clean
    assert np.array_equal(decoded(clean), PIXELS)
