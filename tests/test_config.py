"""The one configuration: lanes merge with the defaults, engine names are checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlserve.config import Limits, Settings
from vlserve.media import VisionSettings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vlserve.toml"
    path.write_text(text)
    return path


def test_one_configured_lane_keeps_the_others(tmp_path: Path) -> None:
    # The docs' own example configures only the interactive lane.
    settings = Settings.load(write(tmp_path, "[scheduling.lanes.interactive]\nconcurrency = 2\nqueue_size = 4\n"))
    lanes = settings.scheduling.lanes
    assert set(lanes) == {"interactive", "batch", "video"}
    assert (lanes["interactive"].concurrency, lanes["interactive"].queue_size) == (2, 4)
    assert lanes["interactive"].queue_timeout == 30.0  # the interactive lane's own default
    assert lanes["batch"] == Settings().scheduling.lanes["batch"]
    assert lanes["video"] == Settings().scheduling.lanes["video"]


def test_a_lane_given_in_part_keeps_its_own_defaults(tmp_path: Path) -> None:
    settings = Settings.load(write(tmp_path, "[scheduling.lanes.batch]\nconcurrency = 1\n"))
    batch = settings.scheduling.lanes["batch"]
    assert batch.concurrency == 1
    assert (batch.queue_size, batch.queue_timeout) == (256, 600.0)  # batch's defaults, not a generic lane's


def test_an_extra_lane_is_kept_beside_the_defaults() -> None:
    settings = Settings.model_validate({"scheduling": {"lanes": {"bulk": {"concurrency": 1}}}})
    assert set(settings.scheduling.lanes) == {"interactive", "batch", "video", "bulk"}


@pytest.mark.parametrize(("toml", "named"), [
    ('[scheduling.lanes.video]\nmodel = "vid"\n', "scheduling.lanes.video.model names the engine 'vid'"),
    ('[scheduling.lanes.interactive]\nfallback = "light"\n',
     "scheduling.lanes.interactive.fallback names the engine 'light'"),
    ('[scheduling.models.main]\nmodel = "tiny"\n', "scheduling.models.main"),
])
def test_engine_references_are_checked_when_the_config_loads(tmp_path: Path, toml: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(".", r"\.")):
        Settings.load(write(tmp_path, toml))


def test_every_bad_reference_is_named_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[scheduling.lanes.video]\nmodel = "vid"\n[scheduling.lanes.batch]\nfallback = "small"\n')
    with pytest.raises(ValueError) as caught:
        Settings.load(path)
    assert "'vid'" in str(caught.value) and "'small'" in str(caught.value)


def test_declared_engines_may_be_referenced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[scheduling.models.light]\nmodel = "tiny-moe"\n')
    # The environment names an engine only the file declares: checked on the merged result.
    monkeypatch.setenv("VLSERVE_SCHEDULING__LANES__INTERACTIVE__FALLBACK", "light")
    settings = Settings.load(path)
    assert settings.scheduling.lanes["interactive"].fallback == "light"
    assert settings.scheduling.lanes["batch"].fallback is None


def test_media_limits_have_one_source() -> None:
    """VisionSettings' limits are config.Limits's: by default, and as configured."""
    default, limits = VisionSettings(), Limits()
    assert (default.min_pixels, default.max_pixels) == (limits.min_pixels, limits.max_pixels)
    assert (default.video_max_frames, default.video_fps) == (limits.video_max_frames, limits.video_fps)
    assert (default.video_max_pixels, default.video_total_pixels) == (limits.video_max_pixels,
                                                                       limits.video_total_pixels)
    assert default.max_image_bytes == default.max_video_bytes == limits.max_input_bytes
    assert VisionSettings.from_limits(limits) == default
    configured = Limits(max_pixels=200_000, video_max_frames=8, video_policy="truncate", max_input_bytes=1000)
    vision = VisionSettings.from_limits(configured)
    assert (vision.max_pixels, vision.video_max_frames, vision.video_policy) == (200_000, 8, "truncate")
    assert vision.max_image_bytes == vision.max_video_bytes == 1000


@pytest.mark.parametrize(("limits", "named"), [
    ({"min_pixels": 5000, "max_pixels": 4000}, "limits.max_pixels (4000) must not be below limits.min_pixels"),
    ({"video_fps": 0}, "limits.video_fps"),
    ({"video_max_frames": 2}, "limits.video_max_frames"),
    ({"default_max_tokens": 9000}, "limits.default_max_tokens (9000) must not exceed limits.max_tokens"),
])
def test_limits_that_contradict_each_other_are_refused_at_load(limits: dict[str, object], named: str) -> None:
    """Caught with the config, not when the model loads (media settings) or at every request (4000)."""
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Settings.model_validate({"limits": limits})
