"""Frame sampling and timestamps against transformers' Qwen3-VL code."""

from __future__ import annotations

import itertools

import pytest

from vlserve.media.sampling import group_timestamps, pad_to_multiple, sample_indices


def test_sample_indices_match_transformers() -> None:
    qwen3 = pytest.importorskip("transformers.models.qwen3_vl.video_processing_qwen3_vl")
    from transformers.video_utils import VideoMetadata

    procs = {
        (lo, hi): qwen3.Qwen3VLVideoProcessor(min_frames=lo, max_frames=hi)
        for lo, hi in [(4, 768), (2, 8), (1, 3)]
    }
    for (lo, hi), total, src, fps in itertools.product(
        procs,
        [1, 2, 3, 5, 29, 30, 31, 300, 899, 5000],
        [24.0, 29.97, 30.0, 60.0, 2.0],
        [0.5, 2.0, 3.3],
    ):
        proc = procs[(lo, hi)]
        expected = proc.sample_frames(VideoMetadata(total_num_frames=total, fps=src), fps=fps).tolist()
        assert sample_indices(total, src, fps, min_frames=lo, max_frames=hi) == expected


def test_timestamps_match_transformers() -> None:
    processing = pytest.importorskip("transformers.models.qwen3_vl.processing_qwen3_vl")
    for indices, fps in [
        ([0, 15, 30, 45], 30.0),
        ([0, 7, 14], 29.97),
        ([3], 10.0),
        (list(range(0, 100, 9)), 24.0),
    ]:
        expected = processing.Qwen3VLProcessor._calculate_timestamps(None, list(indices), fps, 2)
        assert group_timestamps(pad_to_multiple(indices, 2), fps, 2) == expected


def test_odd_counts_repeat_the_last_frame() -> None:
    assert pad_to_multiple([0, 4, 9], 2) == [0, 4, 9, 9]
    assert pad_to_multiple([0, 4], 2) == [0, 4]
    assert pad_to_multiple([], 2) == []
