"""VisionSettings defaults, validation and checkpoint loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlserve.config import Limits
from vlserve.media import VisionSettings


def test_defaults_are_qwen3_vl_with_the_service_limits() -> None:
    settings, limits = VisionSettings(), Limits()
    assert settings.factor == 32 and settings.image_mean == settings.image_std == (0.5, 0.5, 0.5)
    # The limits have one source, the configuration (vlserve.config.Limits).
    assert settings.min_pixels == limits.min_pixels and settings.max_pixels == limits.max_pixels
    assert settings.video_max_pixels == limits.video_max_pixels
    assert settings.video_total_pixels == limits.video_total_pixels
    assert settings.max_video_seconds == 30.0 and settings.video_policy == "reject"


def test_from_limits_takes_constants_from_the_checkpoint_and_limits_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"shortest_edge": 3136, "longest_edge": 12845056}, "patch_size": 14}))
    limits = Limits(min_pixels=1024, max_pixels=500_000)
    settings = VisionSettings.from_limits(limits, checkpoint=tmp_path)
    assert settings.patch_size == 14  # the model's constant
    assert (settings.min_pixels, settings.max_pixels) == (1024, 500_000)  # the service's limits


def test_from_checkpoint_reads_hf_configs(tmp_path: Path) -> None:
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 3136, "longest_edge": 12845056},
                "patch_size": 14,
                "merge_size": 2,
                "temporal_patch_size": 2,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "image_processor_type": "Qwen2VLImageProcessorFast",
            }
        )
    )
    (tmp_path / "video_preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"shortest_edge": 8192, "longest_edge": 1000000},
                "fps": 1,
                "min_frames": 2,
                "max_frames": 64,
            }
        )
    )
    settings = VisionSettings.from_checkpoint(tmp_path, max_video_seconds=10.0)
    assert (settings.min_pixels, settings.max_pixels, settings.patch_size) == (3136, 12845056, 14)
    assert settings.factor == 28
    assert settings.image_mean == (0.48145466, 0.4578275, 0.40821073)
    assert (settings.video_min_pixels, settings.video_total_pixels) == (8192, 1000000)
    assert (settings.video_fps, settings.video_min_frames, settings.video_max_frames) == (1.0, 2, 64)
    assert settings.max_video_seconds == 10.0


def test_from_checkpoint_missing_files_keep_defaults(tmp_path: Path) -> None:
    assert VisionSettings.from_checkpoint(tmp_path) == VisionSettings()
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 1024, "max_pixels": 4096}))
    settings = VisionSettings.from_checkpoint(tmp_path)
    assert (settings.min_pixels, settings.max_pixels) == (1024, 4096)
    with pytest.raises(TypeError):
        VisionSettings.from_checkpoint(tmp_path, no_such_field=1)


def test_invalid_settings_fail_early() -> None:
    with pytest.raises(ValueError):
        VisionSettings(min_pixels=10, max_pixels=5)
    with pytest.raises(ValueError):
        VisionSettings(video_policy="drop")  # type: ignore[arg-type]
