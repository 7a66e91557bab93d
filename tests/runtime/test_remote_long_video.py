"""Long videos through a remote engine: a gateway whose main engine is a pool of RemoteEngines in front of a
real ``vlserve serve --model tiny`` upstream runs a video_summary job window by window, each window's frames
sent as timestamped JPEG images (an OpenAI-compatible upstream takes no decoded video), windows in order."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.upstreams import gateway, gateway_settings
from vlserve.config import Settings
from vlserve.testing.videos import timeline_video

LIMITS = {"long_video_max_seconds": 40, "long_video_window_seconds": 5, "long_video_max_frames": 32,
          "long_video_fps": 1.0, "long_video_window_tokens": 256}


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("gw-longvideo")
    base = gateway_settings(tmp, [upstream]).model_dump(mode="json")
    settings = Settings.model_validate({**base, "limits": {**base["limits"], **LIMITS},
                                        "jobs": {**base["jobs"], "workers": 1, "lease_seconds": 10,
                                                 "sqlite_path": str(Path(tmp) / "jobs.sqlite3")}})
    with gateway(settings) as url:
        yield url


def test_a_summary_job_runs_through_a_remote_engine(gw: str) -> None:
    video = "data:video/mp4;base64," + base64.b64encode(timeline_video(15, fps=10, width=96, height=64)).decode()
    answer = httpx.post(gw + "/jobs", json={"task": "video_summary", "videos": [video],
                                            "options": {"max_tokens": 16}}, timeout=30)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["jobs"][0]["id"]
    deadline = time.monotonic() + 300
    while (job := httpx.get(f"{gw}/jobs/{job_id}", timeout=30).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]["result"]
    windows = result["answer"]["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0)]
    assert all(w["frames"] == 4 for w in windows)
    events = result["answer"]["events"]
    assert events == sorted(events, key=lambda e: (e["start"], e["end"]))
    metadata = result["metadata"]
    # the frames went as images (2 per window: one per temporal pair), none as video
    assert metadata["image_tokens"] > 0 and metadata["video_tokens"] == 0
    assert metadata["windows"] == 3 and metadata["sampled_frames"] == 12
