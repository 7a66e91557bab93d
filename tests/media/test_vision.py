"""preprocess_image is bit-equal to transformers' Qwen2VLImageProcessorPil."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlserve.media import ImageFeatures, VisionSettings, count_image_tokens, preprocess_image

SHAPES = [  # (width, height)
    (1, 1),
    (3, 2),
    (15, 15),
    (16, 16),
    (33, 31),
    (32, 32),
    (32, 2000),
    (2000, 32),
    (77, 33),
    (100, 100),
    (224, 224),
    (257, 255),
    (640, 480),
    (480, 640),
    (1280, 720),
    (10, 1000),
    (1000, 10),
    (600, 3),
    (97, 61),
    (1023, 769),
]
DEFAULT = VisionSettings()
SMALL = VisionSettings(min_pixels=56 * 56, max_pixels=200_000)  # big shapes get downscaled
LARGE_MIN = VisionSettings(min_pixels=512 * 512, max_pixels=1024 * 1024)  # small shapes get upscaled
CLIP_NORM = VisionSettings(
    image_mean=(0.48145466, 0.4578275, 0.40821073), image_std=(0.26862954, 0.26130258, 0.27577711)
)


def _check(image: Image.Image, settings: VisionSettings, image_reference: Any) -> ImageFeatures:
    expected, grid = image_reference(image, settings)
    features = preprocess_image(image, settings)
    assert features.pixel_values.dtype == np.float32
    assert features.pixel_values.shape == expected.shape
    assert np.array_equal(features.pixel_values, expected)
    assert features.grid_thw == tuple(int(v) for v in grid[0])
    return features


@pytest.mark.parametrize("settings", [DEFAULT, SMALL, LARGE_MIN], ids=["default", "small", "large-min"])
def test_equal_to_reference_on_many_shapes(
    settings: VisionSettings, image_reference: Any, mt: SimpleNamespace
) -> None:
    for seed, (w, h) in enumerate(SHAPES):
        image = Image.fromarray(mt.noise_image(w, h, seed))
        features = _check(image, settings, image_reference)
        assert features.original_size == (w, h)
        rw, rh = features.resized_size
        assert rw % settings.factor == 0 and rh % settings.factor == 0
        assert features.grid_thw == (1, rh // settings.patch_size, rw // settings.patch_size)
        assert features.num_tokens == count_image_tokens(w, h, settings)
        assert features.num_tokens * settings.merge_size**2 == features.pixel_values.shape[0]


def test_equal_with_per_channel_mean_std(image_reference: Any, mt: SimpleNamespace) -> None:
    for seed, (w, h) in enumerate([(640, 480), (33, 77), (1, 1)]):
        _check(Image.fromarray(mt.noise_image(w, h, seed)), CLIP_NORM, image_reference)


@pytest.mark.parametrize("factor", [1 / 255, 1 / 127.5, 0.0039, 0.01])
def test_equal_with_other_rescale_factors(factor: float, image_reference: Any, mt: SimpleNamespace) -> None:
    module = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    settings = VisionSettings(rescale_factor=factor)
    proc = module.Qwen2VLImageProcessorPil(
        patch_size=16,
        merge_size=2,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        rescale_factor=factor,
        size={"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
    )
    image = Image.fromarray(mt.noise_image(300, 200, 7))
    assert np.array_equal(preprocess_image(image, settings).pixel_values, proc(image)["pixel_values"])


def test_equal_when_downscaling_beyond_max_pixels(image_reference: Any) -> None:
    # 4200x4100 = 17.2M pixels > max_pixels (16.8M): a real downscale with the default settings.
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (4100, 4200, 3), dtype=np.uint8))
    features = _check(image, DEFAULT, image_reference)
    w, h = features.resized_size
    assert w * h <= DEFAULT.max_pixels and (w, h) != (4200, 4100)


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "RGB-key"])
def test_other_modes_equal_reference(mode: str, image_reference: Any, mt: SimpleNamespace) -> None:
    rgb = Image.fromarray(mt.noise_image(70, 50, 11))
    if mode == "P":
        image = rgb.quantize(16)
        image.info["transparency"] = 3
    elif mode in ("RGBA", "LA"):
        image = rgb.convert(mode)
        image.putalpha(Image.linear_gradient("L").resize(rgb.size))
    elif mode == "RGB-key":
        image = rgb.copy()
        image.info["transparency"] = tuple(np.asarray(image)[0, 0].tolist())
    else:
        image = rgb.convert(mode)
    _check(image, DEFAULT, image_reference)
