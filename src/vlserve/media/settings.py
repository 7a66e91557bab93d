"""Every limit and model constant of media preprocessing, in one frozen object.

The model constants default to Qwen3-VL's (patch 16, merge 2, temporal patch 2, mean/std 0.5).
The limits (pixel budgets, frames, byte caps, the video length and policy) have no defaults of
their own: they are :class:`vlserve.config.Limits`'s, the one configuration, and
:meth:`VisionSettings.from_limits` is how the server, ``vlserve ask`` and ``vlserve recon3d``
all build their settings, so the CLI prepares media exactly as the server does.
``VisionSettings.from_checkpoint`` reads the Hugging Face ``preprocessor_config.json`` /
``video_preprocessor_config.json`` so a checkpoint with other constants gets what it was
trained on.

Mapping to the Hugging Face processors (so the numbers can be checked there):

==========================  =============================================================
field                       Hugging Face
==========================  =============================================================
``min_pixels``              image ``size["shortest_edge"]`` (or legacy ``min_pixels``)
``max_pixels``              image ``size["longest_edge"]`` (or legacy ``max_pixels``)
``video_min_pixels``        video ``size["shortest_edge"]``
``video_total_pixels``      video ``size["longest_edge"]``
``video_max_pixels``        video ``max_video_tokens * factor**2`` (the per-frame cap)
``video_fps``               video ``fps``
``video_min_frames``        video ``min_frames``
``video_max_frames``        video ``max_frames``
==========================  =============================================================
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from vlserve.config import Limits

__all__ = ["VideoPolicy", "VisionSettings", "limit_fields"]

VideoPolicy = Literal["reject", "truncate"]

_LIMITS = Limits()  # the configuration's defaults: the only place media limits are written down


def limit_fields(limits: Limits) -> dict[str, Any]:
    """The :class:`VisionSettings` fields that ``limits`` (``[limits]`` in the config) sets."""
    return dict(
        min_pixels=limits.min_pixels,
        max_pixels=limits.max_pixels,
        max_image_pixels=limits.max_image_pixels,
        max_image_bytes=limits.max_input_bytes,
        max_video_bytes=limits.max_input_bytes,
        video_fps=limits.video_fps,
        video_max_frames=limits.video_max_frames,
        video_max_pixels=limits.video_max_pixels,
        video_total_pixels=limits.video_total_pixels,
        max_video_seconds=limits.max_video_seconds,
        video_policy=limits.video_policy,
        image_decode_pixels=limits.image_decode_pixels,
        max_image_frames=limits.max_image_frames,
        video_containers=tuple(limits.video_containers),
        isolate_image_pixels=limits.image_isolate_pixels,
        heavy_nice=limits.worker_nice,
        encode_ahead_tokens=limits.image_encode_ahead_tokens,
    )


@dataclass(frozen=True)
class VisionSettings:
    """Constants of the vision encoder and limits on what users may send.

    Pixel counts are ``height * width`` after resizing; ``factor`` is the side
    length in pixels of one merged token (``patch_size * merge_size``).
    """

    patch_size: int = 16
    merge_size: int = 2
    temporal_patch_size: int = 2
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Limits: the defaults are config.Limits's (see limit_fields for the mapping).
    min_pixels: int = _LIMITS.min_pixels  # images
    max_pixels: int = _LIMITS.max_pixels  # images
    # Decoded-size guard against decompression bombs: refused before pixels are decoded.
    max_image_pixels: int = _LIMITS.max_image_pixels
    video_fps: float = _LIMITS.video_fps
    video_min_frames: int = 4  # model constant (HF min_frames)
    video_max_frames: int = _LIMITS.video_max_frames
    # HF video size["shortest_edge"], used as transformers does: int(1.05 * it) floors the
    # per-frame budget, and it bounds t*h*w from below in video_smart_resize (see sizing).
    video_min_pixels: int = 4096
    video_max_pixels: int = _LIMITS.video_max_pixels  # per frame
    video_total_pixels: int = _LIMITS.video_total_pixels  # budget for all frames together
    max_video_seconds: float = _LIMITS.max_video_seconds
    video_policy: VideoPolicy = _LIMITS.video_policy
    # Beyond the agreed interface (kept last so positional use of the fields above still works):
    rescale_factor: float = 1 / 255  # HF "rescale_factor"
    # Encoded-size guards for bytes and files handed to the loaders (PayloadTooLargeError).
    max_image_bytes: int = _LIMITS.max_input_bytes
    max_video_bytes: int = _LIMITS.max_input_bytes
    # Decoding bounds (docs/media.md): JPEGs above image_decode_pixels decode at reduced scale;
    # images declaring more frames than max_image_frames and videos in other containers are refused.
    image_decode_pixels: int = _LIMITS.image_decode_pixels
    max_image_frames: int = _LIMITS.max_image_frames
    video_containers: tuple[str, ...] = tuple(_LIMITS.video_containers)
    # Heavy pixel work (docs/inputs.md, "Isolation"): images above isolate_image_pixels (and every
    # 16-bit or float image) decode in the isolated image workers, and resize on a thread of this
    # niceness, so a few large images cannot take the CPU from the engine and everyone's small ones.
    isolate_image_pixels: int = _LIMITS.image_isolate_pixels
    heavy_nice: int = _LIMITS.worker_nice
    encode_ahead_tokens: int = _LIMITS.image_encode_ahead_tokens  # 0: the tower runs in the prefill

    def __post_init__(self) -> None:
        # Fail at configuration time rather than deep inside a request.
        for name in ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VisionSettings.{name} must be positive")
        if self.min_pixels > self.max_pixels:
            raise ValueError("VisionSettings.min_pixels must not exceed max_pixels")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("VisionSettings.image_mean and image_std need one value per RGB channel")
        if any(s == 0 for s in self.image_std):
            raise ValueError("VisionSettings.image_std must not contain zeros")
        if self.video_min_frames < 1 or self.video_max_frames < self.video_min_frames:
            raise ValueError("VisionSettings needs 1 <= video_min_frames <= video_max_frames")
        if not (self.video_fps > 0 and math.isfinite(self.video_fps)):
            raise ValueError("VisionSettings.video_fps must be a positive number")
        if self.video_policy not in ("reject", "truncate"):
            raise ValueError("VisionSettings.video_policy must be 'reject' or 'truncate'")

    @property
    def factor(self) -> int:
        """Side length in pixels of one merged token: resized sides are multiples of it."""
        return self.patch_size * self.merge_size

    @classmethod
    def from_limits(cls, limits: Limits, checkpoint: Path | str | None = None) -> VisionSettings:
        """The settings the service uses: model constants from ``checkpoint`` (when given), every
        limit from ``limits``. The server, ``vlserve ask`` and ``vlserve recon3d`` all call this."""
        if checkpoint is None:
            return cls(**limit_fields(limits))
        return cls.from_checkpoint(checkpoint, **limit_fields(limits))

    @classmethod
    def from_checkpoint(cls, path: Path | str, **overrides: Any) -> VisionSettings:
        """Read a checkpoint's preprocessor configs; keys it lacks keep our defaults.

        ``path`` is the checkpoint folder holding ``preprocessor_config.json`` and,
        optionally, ``video_preprocessor_config.json`` (Hugging Face format).
        ``overrides`` replace fields afterwards (service limits such as
        ``max_video_seconds`` are not part of a checkpoint).
        """
        folder = Path(path)
        values: dict[str, Any] = {}
        image_cfg = _read_json(folder / "preprocessor_config.json")
        video_cfg = _read_json(folder / "video_preprocessor_config.json")
        for cfg in (image_cfg, video_cfg):  # the video config may restate the model constants
            for key in ("patch_size", "merge_size", "temporal_patch_size"):
                if isinstance(cfg.get(key), int):
                    values[key] = cfg[key]
        for key in ("image_mean", "image_std"):
            if _is_triple(image_cfg.get(key)):
                values[key] = tuple(float(v) for v in image_cfg[key])
        if isinstance(image_cfg.get("rescale_factor"), (int, float)):
            values["rescale_factor"] = float(image_cfg["rescale_factor"])
        size = _sub_dict(image_cfg, "size")
        for field, keys in (
            ("min_pixels", ("shortest_edge", "min_pixels")),
            ("max_pixels", ("longest_edge", "max_pixels")),
        ):
            value = _first_int(size, keys)
            value = _first_int(image_cfg, (field,)) if value is None else value
            if value is not None:
                values[field] = value
        vsize = _sub_dict(video_cfg, "size")
        for field, key in (("video_min_pixels", "shortest_edge"), ("video_total_pixels", "longest_edge")):
            value = _first_int(vsize, (key,))
            if value is not None:
                values[field] = value
        for field, key in (("video_min_frames", "min_frames"), ("video_max_frames", "max_frames")):
            if isinstance(video_cfg.get(key), int):
                values[field] = video_cfg[key]
        if isinstance(video_cfg.get("fps"), (int, float)) and video_cfg["fps"] > 0:
            values["video_fps"] = float(video_cfg["fps"])
        if isinstance(video_cfg.get("max_video_tokens"), int):
            factor = values.get("patch_size", cls.patch_size) * values.get("merge_size", cls.merge_size)
            values["video_max_pixels"] = video_cfg["max_video_tokens"] * factor * factor
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown VisionSettings fields: {sorted(unknown)}")
        return replace(cls(), **{**values, **overrides})


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when the file is absent."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def _sub_dict(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _first_int(mapping: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _is_triple(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, (int, float)) for v in value)
    )
