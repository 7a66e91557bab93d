"""Chat messages → the exact token sequence and vision tensors Qwen3-VL expects.

The checkpoint's own chat template renders one ``<|image_pad|>`` per image and
``<|vision_start|><|video_pad|><|vision_end|>`` per video; we then expand the placeholders like
Qwen's reference processor: an image pad becomes one pad per merged patch, and a video becomes, for
each temporal group, ``<{t:.1f} seconds><|vision_start|>`` + pads + ``<|vision_end|>``.
``mm_token_type_ids`` marks image pads 1 and video pads 2: transformers needs it to place the
multimodal rotary positions (without it generation runs but positions image tokens wrongly).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vlserve.errors import RequestError
from vlserve.media import ImageFeatures, VideoFeatures
from vlserve.runtime.protocol import ImagePart, Message, TextPart, VideoPart

IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VIDEO_BLOCK = VISION_START + VIDEO_PAD + VISION_END
_PLACEHOLDERS = re.compile(re.escape(VIDEO_BLOCK) + "|" + re.escape(VIDEO_PAD) + "|" + re.escape(IMAGE_PAD))


@dataclass
class ModelInputs:
    """One request, ready for the model (unbatched, numpy)."""

    input_ids: list[int]
    mm_token_type_ids: list[int]
    images: list[ImageFeatures] = field(default_factory=list)
    videos: list[VideoFeatures] = field(default_factory=list)
    prompt: str = ""
    # Content ids of the images / videos for the vision-encoder cache (None: not cached).
    image_keys: list[str | None] = field(default_factory=list)
    video_keys: list[str | None] = field(default_factory=list)

    @property
    def image_tokens(self) -> int:
        return sum(f.num_tokens for f in self.images)

    @property
    def video_tokens(self) -> int:
        return sum(f.num_tokens for f in self.videos)

    def vision_kwargs(self) -> dict[str, np.ndarray]:
        """``pixel_values``/``image_grid_thw`` and their video twins, concatenated in prompt order."""
        out: dict[str, np.ndarray] = {}
        if self.images:
            out["pixel_values"] = np.concatenate([f.pixel_values for f in self.images])
            out["image_grid_thw"] = np.array([f.grid_thw for f in self.images], dtype=np.int64)
        if self.videos:
            out["pixel_values_videos"] = np.concatenate([f.pixel_values for f in self.videos])
            out["video_grid_thw"] = np.array([f.grid_thw for f in self.videos], dtype=np.int64)
        return out


def template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Our messages in the shape chat templates expect (content parts with a ``type``)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                parts.append({"type": "image"})
            elif isinstance(part, VideoPart):
                parts.append({"type": "video"})
        entry: dict[str, Any] = {"role": message.role, "content": parts}
        if message.tool_calls:
            entry["tool_calls"] = [{"type": "function", "id": call.id,
                                    "function": {"name": call.name, "arguments": call.arguments}}
                                   for call in message.tool_calls]
        out.append(entry)
    return out


def expand_placeholders(text: str, images: list[ImageFeatures], videos: list[VideoFeatures]) -> str:
    """Replace each image/video placeholder by its full run of vision tokens, in order."""
    image_iter, video_iter = iter(images), iter(videos)

    def replace(match: re.Match[str]) -> str:
        if match.group() == IMAGE_PAD:
            feat = next(image_iter, None)
            if feat is None:
                raise RequestError("the prompt has more image placeholders than images")
            return IMAGE_PAD * feat.num_tokens
        video = next(video_iter, None)
        if video is None:
            raise RequestError("the prompt has more video placeholders than videos")
        per_group = VIDEO_PAD * video.tokens_per_frame_group
        return "".join(f"<{t:.1f} seconds>{VISION_START}{per_group}{VISION_END}" for t in video.timestamps)

    expanded = _PLACEHOLDERS.sub(replace, text)
    if next(image_iter, None) is not None or next(video_iter, None) is not None:
        raise RequestError("the chat template dropped an image or video placeholder")
    return expanded


def build_inputs(
    messages: list[Message],
    *,
    render: Callable[[list[dict[str, Any]]], str],
    encode: Callable[[str], list[int]],
    image_features: Callable[[ImagePart], ImageFeatures],
    video_features: Callable[[VideoPart], VideoFeatures],
    image_token_id: int,
    video_token_id: int,
) -> ModelInputs:
    """Render, expand and tokenize ``messages``; vision parts are turned into features in order."""
    images: list[ImageFeatures] = []
    videos: list[VideoFeatures] = []
    for message in messages:
        for part in message.parts:
            if isinstance(part, ImagePart):
                images.append(image_features(part))
            elif isinstance(part, VideoPart):
                videos.append(video_features(part))
    prompt = expand_placeholders(render(template_messages(messages)), images, videos)
    ids = encode(prompt)
    arr = np.asarray(ids)
    types = np.where(arr == image_token_id, 1, np.where(arr == video_token_id, 2, 0))
    return ModelInputs(ids, types.tolist(), images, videos, prompt)
