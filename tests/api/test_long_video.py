"""video_summary and video_search over a real server with the tiny model: accepted as jobs on the video
lane, answered with windows covering the video in order, refused on /infer (4000, pointing to /jobs),
too-long and hostile videos failing their job with 1002/1003; video_qa keeps its 30 s policy (1002)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import LiveServer, make_settings, run_server
from vlserve.api.app import create_app
from vlserve.tasks import get_task
from vlserve.testing.hostile import SDP
from vlserve.testing.videos import timeline_video

LIMITS = {"max_images": 3, "max_tokens": 1024, "long_video_max_seconds": 40, "long_video_window_seconds": 5,
          "long_video_max_frames": 32, "long_video_fps": 1.0, "long_video_window_tokens": 256}


def uri(video: bytes) -> str:
    return "data:video/mp4;base64," + base64.b64encode(video).decode()


@pytest.fixture(scope="module")
def server(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """No keys; windows of 5 s, a 40 s limit; jobs heartbeat (and report progress) every 1.3 s; every
    forward pass lasts at least 60 ms (scheduling.min_step_ms), so a window of 8 tokens takes longer
    than a heartbeat on a quiet machine too, as a real model's would."""
    tmp = tmp_path_factory.mktemp("longvideo")
    settings = make_settings(tmp, limits=LIMITS, jobs={"sqlite_path": str(tmp / "jobs.sqlite3"), "lease_seconds": 4},
                             scheduling={"min_step_ms": 60})
    # The session engine's first JSON-schema request sets up the grammar engine for its tokenizer,
    # which can hold the GIL for many seconds on a loaded machine: done here, not inside a job.
    engine.grammar.matcher(get_task("video_summary").schema(), 64)
    app = create_app(settings, engine=engine)
    for url in run_server(app):
        yield LiveServer(url, settings, app)


@pytest.fixture(scope="module")
def fifteen_seconds() -> str:
    return uri(timeline_video(15, fps=10, width=96, height=64))


def finish(url: str, job_id: str, timeout: float = 300) -> tuple[dict[str, Any], list[float]]:
    """Poll the job to its end; also the progress values seen on the way."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=60).json()
        seen.append(job["progress"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, seen
        assert time.monotonic() < deadline, job
        time.sleep(0.25)


def submit(url: str, body: dict[str, Any]) -> str:
    answer = httpx.post(url + "/jobs", json=body, timeout=30)
    assert answer.status_code == 202, answer.text
    (job,) = answer.json()["jobs"]
    assert job["lane"] == "video"
    return str(job["id"])


def test_a_summary_job_covers_the_video_in_order(server: LiveServer, fifteen_seconds: str) -> None:
    job, seen = finish(server.url, submit(server.url, {"task": "video_summary", "videos": [fifteen_seconds],
                                                       "options": {"max_tokens": 16}}))
    assert job["status"] == "succeeded", job["error"]
    assert seen == sorted(seen) and job["progress"] == 1.0  # progress only moves forward, to the end
    result = job["result"]
    assert result["code"] == 0
    answer = result["result"]["answer"]
    assert set(answer) == {"duration", "summary", "events", "windows"} and answer["duration"] == 15.0
    assert [(w["start"], w["end"]) for w in answer["windows"]] == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0)]
    assert all(w["frames"] == 4 for w in answer["windows"])
    events = answer["events"]
    assert events == sorted(events, key=lambda e: (e["start"], e["end"]))
    assert all(set(e) == {"start", "end", "text"} and 0 <= e["start"] <= e["end"] <= 15.0 for e in events)
    meta = result["result"]["metadata"]
    assert meta["windows"] == 3 and meta["sampled_frames"] == 12 and meta["video_tokens"] > 0


def test_a_search_job_answers_moments(server: LiveServer, fifteen_seconds: str) -> None:
    part = {"url": fifteen_seconds, "start": 5.0, "end": 15.0}
    job, _ = finish(server.url, submit(server.url, {"task": "video_search", "text": "a green screen",
                                                    "videos": [part], "options": {"max_tokens": 16}}))
    assert job["status"] == "succeeded", job["error"]
    answer = job["result"]["result"]["answer"]
    assert answer["query"] == "a green screen"
    assert [(w["start"], w["end"]) for w in answer["windows"]] == [(5.0, 10.0), (10.0, 15.0)]
    assert all(set(m) == {"start", "end", "reason"} and 5.0 <= m["start"] <= m["end"] <= 15.0
               for m in answer["moments"])


def test_progress_is_visible_while_the_job_runs(server: LiveServer) -> None:
    """Eight windows: the job's progress is seen between 0 and 1 before it finishes."""
    forty = uri(timeline_video(40, fps=4, width=64, height=48, barcode=False))
    job, seen = finish(server.url, submit(server.url, {"task": "video_summary", "videos": [forty],
                                                       "options": {"max_tokens": 8}}))
    assert job["status"] == "succeeded", job["error"]
    assert len(job["result"]["result"]["answer"]["windows"]) == 8
    assert any(0 < p < 1 for p in seen), seen


def test_infer_refuses_long_video_tasks_with_a_pointer_to_jobs(server: LiveServer, fifteen_seconds: str) -> None:
    for path in ("/infer", "/infer_stream"):
        answer = httpx.post(server.url + path, json={"task": "video_summary", "videos": [fifteen_seconds]}, timeout=30)
        assert answer.status_code == 400 and answer.json()["code"] == 4000
        assert "POST /jobs" in answer.json()["msg"]


def test_too_long_and_hostile_videos_fail_their_job_with_codes(server: LiveServer) -> None:
    too_long = uri(timeline_video(44, fps=2, width=64, height=48, barcode=False))
    sdp = "data:video/mp4;base64," + base64.b64encode(SDP).decode()
    long_job = submit(server.url, {"task": "video_summary", "videos": [too_long]})
    bad_job = submit(server.url, {"task": "video_search", "text": "x", "videos": [sdp]})
    job, _ = finish(server.url, long_job)
    assert job["status"] == "failed" and job["error"]["code"] == 1002
    job, _ = finish(server.url, bad_job)
    assert job["status"] == "failed" and job["error"]["code"] == 1003
    # video_qa keeps the seed's 30 s policy on /infer: the same 44 s video is refused with 1002.
    qa = httpx.post(server.url + "/infer", json={"task": "video_qa", "text": "?", "videos": [too_long]}, timeout=60)
    assert qa.json()["code"] == 1002


def test_tasks_lists_the_long_video_tasks_with_their_rules(server: LiveServer) -> None:
    tasks = {t["name"]: t for t in httpx.get(server.url + "/tasks", timeout=10).json()["tasks"]}
    for name in ("video_summary", "video_search"):
        assert tasks[name]["lane"] == "video" and tasks[name]["jobs_only"] is True
        assert tasks[name]["inputs"]["videos"] == [1, 1]
    assert tasks["video_search"]["inputs"]["text_required"] is True
