"""FFmpeg hardening: containers are recognised from bytes and whitelisted before FFmpeg opens anything.

Text formats FFmpeg reads as media (SDP, ffconcat, HLS, image-sequence patterns) must all get the one
refusal message, whatever files they name and whether those exist; decoding runs in a worker process
whose limits end a video that would take too long.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from vlserve.errors import VideoError
from vlserve.isolation import WorkerLimits, WorkerPool
from vlserve.media import VisionSettings, load_video, probe_video, probe_video_async
from vlserve.media.decode import REFUSED
from vlserve.media.video import TOO_COMPLEX


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    yield listener
    listener.close()


def _sdp(port: int) -> bytes:
    return (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=stream\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    ).encode()


def _refusal(call, *args, **kwargs) -> str:
    with pytest.raises(VideoError) as info:
        call(*args, **kwargs)
    assert info.value.code == 1003
    return info.value.message


def test_sdp_is_refused_and_opens_no_socket(udp_listener: socket.socket) -> None:
    port = udp_listener.getsockname()[1]
    for call in (load_video, probe_video):
        assert _refusal(call, _sdp(port), VisionSettings()) == REFUSED
    with pytest.raises(TimeoutError):
        udp_listener.recvfrom(2048)  # nothing was sent to the port the "video" named


def test_ffconcat_gets_one_message_whether_the_files_exist_or_not(tmp_path: Path, mt: SimpleNamespace) -> None:
    existing = tmp_path / "real.mp4"
    existing.write_bytes(mt.encode_video("mp4", "libx264", frames=4))
    messages = set()
    for target in (existing, tmp_path / "missing.mp4", Path("/etc/passwd"), Path("/nonexistent/file")):
        script = f"ffconcat version 1.0\nfile '{target}'\n".encode()
        messages.add(_refusal(load_video, script, VisionSettings()))
        # The same script arriving as a server-local path is refused the same way.
        path = tmp_path / "list.ffconcat"
        path.write_bytes(script)
        messages.add(_refusal(load_video, path, VisionSettings()))
    assert messages == {REFUSED}


@pytest.mark.parametrize(
    "payload",
    [
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/segment.ts\n#EXT-X-ENDLIST\n",
        b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n",
        b"file 'frame-%03d.png'\n",
        b"data:video/mp4;base64,AAAA",
        b"\x00" * 400,
        b"not a video at all",
    ],
    ids=["hls-url", "hls-file", "image2-pattern", "data-uri", "zeros", "text"],
)
def test_other_text_formats_get_the_same_refusal(payload: bytes) -> None:
    assert _refusal(load_video, payload, VisionSettings()) == REFUSED


def test_containers_off_the_whitelist_are_refused_like_anything_else(mt: SimpleNamespace) -> None:
    data = mt.encode_video("matroska", "libx264", frames=4)
    assert load_video(data, VisionSettings()).grid_thw[0] >= 1
    only_mp4 = VisionSettings(video_containers=("mp4",))
    assert _refusal(load_video, data, only_mp4) == REFUSED
    assert _refusal(probe_video, data, only_mp4) == REFUSED


@pytest.mark.parametrize(("fmt", "codec", "container"), [("mp4", "libx264", "mp4"), ("webm", "libvpx-vp9", "matroska"),
                                                        ("avi", "mpeg4", "avi")])
def test_real_videos_still_work_and_probe(fmt: str, codec: str, container: str, mt: SimpleNamespace) -> None:
    data = mt.encode_video(fmt, codec, frames=20, fps=10)
    probe = probe_video(data, VisionSettings())
    assert (probe.container, probe.width, probe.height) == (container, 96, 64)
    assert probe.fps == pytest.approx(10)
    features = load_video(data, VisionSettings())
    isolated_free = load_video(data, VisionSettings(), isolated=False)
    assert features.frame_indices == isolated_free.frame_indices
    assert (features.pixel_values == isolated_free.pixel_values).all()


def test_a_decode_past_the_worker_deadline_is_1003_every_time(mt: SimpleNamespace) -> None:
    # A deadline no real decode can meet stands in for a file that decodes for minutes.
    pool = WorkerPool("video-test", 1, WorkerLimits(wall_seconds=0.05, cpu_seconds=10, memory_bytes=1 << 30))
    try:
        data = mt.encode_video("mp4", "libx264", frames=60, width=320, height=240)
        for _ in range(2):
            assert _refusal(load_video, data, VisionSettings(), pool=pool) == TOO_COMPLEX
    finally:
        pool.close()


def test_async_probe_matches_and_refuses_alike(mt: SimpleNamespace) -> None:
    data = mt.encode_video("mp4", "libx264", frames=20, fps=10)
    assert asyncio.run(probe_video_async(data, VisionSettings())) == probe_video(data, VisionSettings())
    with pytest.raises(VideoError, match="not a video this server accepts"):
        asyncio.run(probe_video_async(b"#EXTM3U\n", VisionSettings()))
