"""Which packets the selective decoder sends (pure planning, no video needed)."""

from __future__ import annotations

from vlserve.media.decode import plan_segments

# 3 closed GOPs of 4 packets, B-frames reordered: decode order pts 0,3,1,2 | 4,7,5,6 | 8,11,9,10
KEYS = [True, False, False, False] * 3
PTS = [0, 3, 1, 2, 4, 7, 5, 6, 8, 11, 9, 10]


def test_skips_gops_without_targets_and_gop_tails() -> None:
    assert plan_segments(KEYS, PTS, {1}) == [(0, 3)]
    assert plan_segments(KEYS, PTS, {0, 9}) == [(0, 1), (8, 11)]
    assert plan_segments(KEYS, PTS, {3, 4}) == [(0, 2), (4, 5)]
    assert plan_segments(KEYS, PTS, {2, 4}) == [(0, 5)]  # GOP 0 sent whole: adjacent ranges merge


def test_open_gop_keeps_previous_gop() -> None:
    # Second GOP's packet with pts 3 is shown before its keyframe (pts 4): a leading picture.
    pts = [0, 2, 1, 4, 3, 6, 5, 7]
    keys = [True, False, False, True, False, False, False, False]
    assert plan_segments(keys, pts, {6}) == [(0, 6)]


def test_stream_not_starting_with_keyframe() -> None:
    assert plan_segments([False, False, True, False], [0, 1, 2, 3], {1, 3}) == [(0, 4)]
    assert plan_segments([False, False, True, False], [0, 1, 2, 3], {3}) == [(2, 4)]
