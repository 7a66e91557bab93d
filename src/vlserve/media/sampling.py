"""Which frames of a clip are sampled, and the timestamps the prompt shows for them.

The rules are transformers' Qwen3-VL ones (``Qwen3VLVideoProcessor.sample_frames``
and ``Qwen3VLProcessor._calculate_timestamps``), so a checkpoint sees what it was
trained on:

* ``n = int(total_frames / source_fps * fps)``, clamped to
  ``[min_frames, max_frames]`` and to ``total_frames``;
* indices ``= round(linspace(0, total_frames - 1, n))`` (numpy rounds halves to even);
* when ``n`` is not a multiple of the temporal patch size the last index is
  repeated (the processor pads with copies of the last frame); an odd count
  therefore becomes even by duplicating the last sampled frame, never by
  dropping or adding a distinct frame;
* the timestamp of each temporal group is the mean of the times
  (``index / source_fps``) of its first and last frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["group_timestamps", "num_sampled_frames", "pad_to_multiple", "sample_indices"]


def num_sampled_frames(
    total_frames: int, source_fps: float, fps: float, *, min_frames: int, max_frames: int
) -> int:
    """How many frames to sample from ``total_frames`` frames played at ``source_fps``."""
    if total_frames <= 0:
        return 0
    wanted = int(total_frames / source_fps * fps)
    return min(max(wanted, min_frames), max_frames, total_frames)


def sample_indices(
    total_frames: int, source_fps: float, fps: float, *, min_frames: int, max_frames: int
) -> list[int]:
    """Indices (0-based, within the clip) of the sampled frames, ascending, before padding."""
    n = num_sampled_frames(total_frames, source_fps, fps, min_frames=min_frames, max_frames=max_frames)
    if n == 0:
        return []
    return [int(i) for i in np.linspace(0, total_frames - 1, n).round().astype(np.int64)]


def pad_to_multiple(indices: Sequence[int], multiple: int) -> list[int]:
    """``indices`` with its last entry repeated until the length is a multiple of ``multiple``."""
    padded = list(indices)
    if padded and len(padded) % multiple:
        padded.extend([padded[-1]] * (multiple - len(padded) % multiple))
    return padded


def group_timestamps(
    padded_indices: Sequence[int], source_fps: float, temporal_patch_size: int
) -> list[float]:
    """Seconds shown before each temporal group: mean time of its first and last frame."""
    times = [index / source_fps for index in padded_indices]
    return [
        (times[i] + times[i + temporal_patch_size - 1]) / 2
        for i in range(0, len(times) - temporal_patch_size + 1, temporal_patch_size)
    ]
