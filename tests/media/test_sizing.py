"""Target sizes and token counts against transformers' own functions."""

from __future__ import annotations

import itertools

import pytest

from vlserve.errors import ImageError, VideoError
from vlserve.media import (
    VisionSettings,
    count_image_tokens,
    count_video_tokens,
    smart_resize,
    video_smart_resize,
)
from vlserve.media.sizing import video_frame_pixel_budget, video_target_size

SIDES = [1, 2, 15, 16, 31, 32, 33, 47, 48, 63, 100, 224, 333, 480, 640, 1000, 1080, 1920, 4032, 6000]


def test_smart_resize_matches_transformers() -> None:
    ref = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl").smart_resize
    for (h, w), (lo, hi) in itertools.product(
        itertools.product(SIDES, SIDES), [(65536, 16777216), (3136, 1003520), (256 * 256, 512 * 512)]
    ):
        if max(h, w) / min(h, w) > 200:
            with pytest.raises(ImageError, match="aspect ratio"):
                smart_resize(h, w, factor=32, min_pixels=lo, max_pixels=hi)
            continue
        assert smart_resize(h, w, factor=32, min_pixels=lo, max_pixels=hi) == ref(h, w, 32, lo, hi), (
            h,
            w,
            lo,
            hi,
        )


def test_video_smart_resize_matches_transformers() -> None:
    qwen3 = pytest.importorskip("transformers.models.qwen3_vl.video_processing_qwen3_vl")
    for (h, w), t in itertools.product(itertools.product(SIDES[::2], SIDES[1::2]), [2, 3, 4, 7, 60]):
        args = dict(factor=32, temporal_factor=2, min_pixels=4096, max_pixels=786432 * t)
        try:
            expected = qwen3.smart_resize(t, h, w, **args)
        except ValueError:
            with pytest.raises(VideoError):
                video_smart_resize(t, h, w, **args)
            continue
        assert video_smart_resize(t, h, w, **args) == expected, (t, h, w)


def test_video_token_count_matches_transformers_capped_rule() -> None:
    qwen3 = pytest.importorskip("transformers.models.qwen3_vl.video_processing_qwen3_vl")
    # The processor's own per-frame cap (768 tokens); the server's configured default is lower.
    settings = VisionSettings(video_max_pixels=768 * 32 * 32)
    proc = qwen3.Qwen3VLVideoProcessor(
        size={"shortest_edge": settings.video_min_pixels, "longest_edge": settings.video_total_pixels}
    )
    kwargs = {"cap_pixels_per_frame": True}
    for frames, (w, h) in itertools.product(
        [2, 4, 5, 30, 61, 768], [(1280, 720), (640, 360), (64, 48), (3840, 2160)]
    ):
        expected = proc.get_num_of_video_patches(frames, h, w, videos_kwargs=kwargs) // settings.merge_size**2
        assert count_video_tokens(frames, w, h, settings) == expected, (frames, w, h)


def test_count_image_tokens_matches_transformers() -> None:
    module = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    settings = VisionSettings(min_pixels=3136, max_pixels=1003520)
    proc = module.Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, size={"shortest_edge": 3136, "longest_edge": 1003520}
    )
    for w, h in [(640, 480), (1920, 1080), (33, 77), (4032, 3024), (10, 10)]:
        assert count_image_tokens(w, h, settings) == proc.get_number_of_image_patches(h, w) // 4


def test_frame_budget_rule() -> None:
    settings = VisionSettings()
    assert video_frame_pixel_budget(4, settings) == settings.video_max_pixels  # per-frame cap binds
    assert video_frame_pixel_budget(60, settings) == settings.video_total_pixels // 60  # clip budget binds
    tiny = VisionSettings(video_total_pixels=10_000, video_min_pixels=4096)
    assert video_frame_pixel_budget(100, tiny) == int(4096 * 1.05)  # floor
    small = VisionSettings(video_max_pixels=32 * 32 * 4)
    assert video_target_size(8, 1280, 720, small) == (64, 32)


def test_degenerate_sizes_are_user_errors() -> None:
    with pytest.raises(ImageError):
        smart_resize(0, 10, factor=32, min_pixels=1, max_pixels=10**6)
    with pytest.raises(ImageError, match="200:1"):
        count_image_tokens(32, 32 * 201, VisionSettings())
