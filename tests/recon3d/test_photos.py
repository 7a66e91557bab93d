"""Photo checks judge the object, not the backdrop: synthetic renders with known exposure and focus."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

pytest.importorskip("manifold3d", reason="renders the flange with the 'recon3d' extra")

from tests.recon3d.helpers import FLANGE
from vlserve.tasks.multiview_3d.photos import BLUR_THRESHOLD, check_photos, judge, object_region, sharpness


def render(background: tuple[int, int, int], *, size: int = 400, radius: int = 70, blur: float = 0.0,
           glare: bool = False, seed: int = 0) -> Image.Image:
    """A textured grey disc (the object) on a plain backdrop, optionally defocused or with glare."""
    rng = np.random.default_rng(seed)
    texture = np.clip(rng.normal(120, 35, (size, size, 3)), 0, 255).astype(np.uint8)
    mask = Image.new("L", (size, size), 0)
    c = size // 2
    ImageDraw.Draw(mask).ellipse((c - radius, c - radius, c + radius, c + radius), fill=255)
    image = Image.composite(Image.fromarray(texture), Image.new("RGB", (size, size), background), mask)
    if glare:  # a blown-out highlight over 40 % of the object, as white as the backdrop
        g, r = c - radius // 7, int(radius * 0.64)
        ImageDraw.Draw(image).ellipse((g - r, g - r, g + r, g + r), fill=(255, 255, 255))
    return image.filter(ImageFilter.GaussianBlur(blur)) if blur else image


def test_a_sharp_object_on_a_white_backdrop_is_neither_over_exposed_nor_blurred() -> None:
    image = render((255, 255, 255))
    assert float((np.asarray(image.convert("L")) >= 250).mean()) > 0.8  # the old whole-frame check fired
    region = object_region(image)
    assert region.found and region.share == pytest.approx(np.pi * 70**2 / 400**2, rel=0.05)
    checked = check_photos([image], ["front"])
    assert checked.warnings == []


def test_a_small_sharp_object_on_a_flat_backdrop_is_not_blurred() -> None:
    # 3 % of the frame, slightly soft (0.8 px): over the whole frame the flat backdrop dilutes the
    # Laplacian below the threshold (what the old check judged); over the object it is well above
    image = render((200, 205, 210), radius=40, size=400, blur=0.8)
    assert sharpness(np.asarray(image.convert("L"), dtype=np.float32)) < BLUR_THRESHOLD / 2
    assert judge(image).sharpness > 3 * BLUR_THRESHOLD
    assert not any("blurred" in w for w in check_photos([image]).warnings)


def test_glare_and_blur_on_the_object_are_still_reported() -> None:
    glare = render((255, 255, 255), glare=True)
    blurred = render((255, 255, 255), blur=6)
    dark = Image.fromarray((np.asarray(render((128, 128, 128))) // 30).astype(np.uint8))
    checked = check_photos([glare, blurred, dark], ["front", "side", "top"])
    text = "\n".join(checked.warnings)
    assert "view 1 (front): the object looks over-exposed" in text
    assert "view 2 (side): the object looks blurred" in text
    assert "view 1 (front): the object looks blurred" not in text
    assert "view 3 (top)" in text and "too dark" in text
    assert checked.quality[0].object_found and checked.quality[1].object_found


def test_a_cluttered_frame_is_judged_whole() -> None:
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    region = object_region(noise)
    assert not region.found and region.mask.all()
    assert check_photos([noise]).warnings == []


def test_a_rendered_model_on_white_passes(tmp_path: object) -> None:
    # the preview renderer's own picture of the flange: white background, shaded object
    from pathlib import Path

    from vlserve.recon3d import compile_spec, export

    path = export(compile_spec(FLANGE), Path(str(tmp_path)), ["png"])["png"]
    with Image.open(path) as rendered:
        view = rendered.convert("RGB").crop((0, 0, rendered.width // 2, rendered.height // 2))
    region = object_region(view)
    assert region.found and 0.03 < region.share < 0.6
    assert not any("over-exposed" in w for w in check_photos([view]).warnings)
