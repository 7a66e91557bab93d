"""The selective decoder against the sequential fallback on real files."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vlserve.media import VisionSettings
from vlserve.media.decode import VideoFile


@pytest.mark.parametrize(
    ("fmt", "codec", "gop"), [("mp4", "libx264", 3), ("webm", "libvpx-vp9", 4), ("avi", "mpeg4", 5)]
)
def test_selective_equals_sequential(fmt: str, codec: str, gop: int, mt: SimpleNamespace) -> None:
    data = mt.encode_video(fmt, codec, width=64, height=48, fps=10, frames=40, gop=gop)
    wanted = [0, 7, 8, 21, 39]
    with VideoFile.open(data, VisionSettings()) as video:
        index = video.index(None)
        by_count = video.index_by_decoding(None)
        assert index.pts is not None and len(index.times) == len(by_count.times) == 40
        assert index.complete and by_count.complete
        selective = {n: f.to_ndarray(format="rgb24") for n, f in video.decode(index, wanted)}
        sequential = {n: f.to_ndarray(format="rgb24") for n, f in video.decode_sequential(wanted)}
    assert sorted(selective) == sorted(sequential) == wanted
    for n in wanted:
        assert np.array_equal(selective[n], sequential[n])


def test_index_stops_at_the_stop_time(mt: SimpleNamespace) -> None:
    from fractions import Fraction

    data = mt.encode_video("mp4", "libx264", width=32, height=32, fps=10, frames=60, gop=10)
    with VideoFile.open(data, VisionSettings()) as video:
        index = video.index(Fraction(2))
    assert not index.complete
    assert 20 < len(index.times) < 60  # everything up to 2 s plus the safety margin, not the rest
