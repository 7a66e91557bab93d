"""GET /jobs/{id}/events over real servers on loopback, with SQLite and with Redis: a long-video job on
the tiny model streams its progress in order and then a final event equal to GET /jobs/{id}; another
key gets 404; streams past the per-key (4029) and global (2001) caps are refused; a client that goes
away frees its slot; keep-alive comments flow while nothing happens; a stream ends with 4008 after
jobs.events_max_seconds."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import KEYS, LiveServer, make_settings, run_server
from vlserve.api.app import create_app
from vlserve.client import AsyncClient, Client
from vlserve.config import ApiKey
from vlserve.errors import NotFoundError, OverloadedError, RequestTimeoutError
from vlserve.service.auth import hash_key
from vlserve.tasks import get_task
from vlserve.testing.videos import timeline_video

LIMITS = {"max_images": 3, "max_tokens": 1024, "long_video_max_seconds": 40, "long_video_window_seconds": 5,
          "long_video_max_frames": 32, "long_video_fps": 1.0, "long_video_window_tokens": 256}
ALICE, BOB = KEYS["alice"], KEYS["bob"]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if request.param == "sqlite":
        return {"backend": "sqlite", "sqlite_path": str(tmp_path_factory.mktemp("events") / "jobs.sqlite3")}
    return {"backend": "redis", "redis_url": request.getfixturevalue("redis_url")}


def own_db(backend: dict[str, Any], db: int) -> dict[str, Any]:
    """The backend with its own SQLite file or Redis database: one server's worker never claims another's jobs."""
    if backend["backend"] == "sqlite":
        return {**backend, "sqlite_path": backend["sqlite_path"].replace(".sqlite3", f"-{db}.sqlite3")}
    return {**backend, "redis_url": backend["redis_url"].rsplit("/", 1)[0] + f"/{db}"}


def serve(engine: Any, tmp: Any, jobs: dict[str, Any]) -> Iterator[LiveServer]:
    keys = [ApiKey(id=name, sha256=hash_key(key), rate_per_minute=10_000).model_dump()
            for name, key in KEYS.items() if name in ("alice", "bob")]
    settings = make_settings(tmp, limits=LIMITS, auth={"keys": keys}, jobs=jobs)
    app = create_app(settings, engine=engine)
    for url in run_server(app):
        yield LiveServer(url, settings, app)


@pytest.fixture(scope="module")
def running(engine: Any, backend: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Runs jobs (heartbeats, so progress, every second); streams read the store every 0.1 s."""
    engine.grammar.matcher(get_task("video_summary").schema(), 64)  # grammar set up outside any job
    yield from serve(engine, tmp_path_factory.mktemp("running"),
                     {**own_db(backend, 11), "lease_seconds": 3, "events_poll_interval": 0.1})


@pytest.fixture(scope="module")
def idle(engine: Any, backend: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Runs no jobs (they stay queued); small caps, quick keep-alives and an 8 s stream limit."""
    yield from serve(engine, tmp_path_factory.mktemp("idle"),
                     {**own_db(backend, 12), "workers": 0, "events_poll_interval": 0.1, "events_keepalive_seconds": 0.3,
                      "events_max_streams_per_key": 2, "events_max_streams": 3, "events_max_seconds": 8})


def submit(url: str, body: dict[str, Any], key: str = ALICE) -> str:
    answer = httpx.post(url + "/jobs", json=body, headers=auth(key), timeout=30)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["jobs"][0]["id"])


def queued_job(url: str) -> str:
    return submit(url, {"task": "captioning", "images": [], "text": "x", "options": {"max_tokens": 2}})


def test_a_long_video_job_streams_progress_in_order_then_its_outcome(running: LiveServer) -> None:
    video = "data:video/mp4;base64," + base64.b64encode(timeline_video(15, fps=10, width=96, height=64)).decode()
    job_id = submit(running.url, {"task": "video_summary", "videos": [video], "options": {"max_tokens": 16}})
    with Client(running.url, api_key=ALICE) as client:
        events = list(client.job_events(job_id))
        polled = httpx.get(f"{running.url}/jobs/{job_id}", headers=auth(ALICE), timeout=30).json()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "final" and set(kinds[:-1]) == {"progress"}, kinds
    progress = [e.job.progress for e in events[:-1]]
    assert progress == sorted(progress), progress  # in order, never backwards
    assert any(e.job.status == "running" for e in events[:-1])  # seen while it ran, not only at the end
    final = events[-1].job
    assert final.status == polled["status"] == "succeeded" and final.progress == 1.0
    assert final.answer is not None and polled["result"]["result"]["answer"] == final.answer.answer
    assert [w["start"] for w in final.answer.answer["windows"]] == [0.0, 5.0, 10.0]


def test_another_keys_job_is_not_found(idle: LiveServer) -> None:
    job_id = queued_job(idle.url)
    answer = httpx.get(f"{idle.url}/jobs/{job_id}/events", headers=auth(BOB), timeout=10)
    assert answer.status_code == 404 and answer.json()["code"] == 4040
    with Client(idle.url, api_key=BOB) as client, pytest.raises(NotFoundError):
        next(iter(client.job_events(job_id)))


class Stream:
    """An open event stream, read line by line (dropping a half-read httpx line iterator would close
    the connection, so it is kept here until the stream is closed on purpose)."""

    def __init__(self, http: httpx.Client, url: str, job_id: str, key: str) -> None:
        self.response = http.send(http.build_request("GET", f"{url}/jobs/{job_id}/events", headers=auth(key)),
                                  stream=True)
        assert self.response.status_code == 200, self.response.read()
        self.lines = self.response.iter_lines()

    def next_event(self) -> str:
        return next(line for line in self.lines if line.startswith("event:"))

    def close(self) -> None:
        self.response.close()


def test_caps_refuse_with_codes_and_a_closed_stream_frees_its_slot(idle: LiveServer) -> None:
    job_id = queued_job(idle.url)
    bobs = submit(idle.url, {"task": "captioning", "images": [], "text": "x"}, key=BOB)
    with httpx.Client(timeout=10) as http:
        one, two = Stream(http, idle.url, job_id, ALICE), Stream(http, idle.url, job_id, ALICE)
        try:
            assert one.next_event() == two.next_event() == "event: progress"
            third = http.get(f"{idle.url}/jobs/{job_id}/events", headers=auth(ALICE))
            assert third.status_code == 429 and third.json()["code"] == 4029  # the key's cap
            bob = Stream(http, idle.url, bobs, BOB)  # another key still may: 3 in all
            try:
                assert bob.next_event() == "event: progress"
                with Client(idle.url, api_key=BOB, max_retries=0) as client, pytest.raises(OverloadedError):
                    next(iter(client.job_events(bobs)))  # the server's cap (3): 2001
            finally:
                bob.close()
            one.close()  # the client goes away: its slot comes back
            deadline = time.monotonic() + 10
            while (again := http.get(f"{idle.url}/jobs/{job_id}/events", headers=auth(ALICE))).status_code == 429:
                assert time.monotonic() < deadline, "a closed stream kept its slot"
                time.sleep(0.2)
        finally:
            one.close()
            two.close()
    # the stream opened last ran to its 8 s limit: keep-alives, then 4008
    assert again.status_code == 200
    assert ": keep-alive" in again.text
    assert again.text.rstrip().splitlines()[-1].startswith("data:") and '"code":4008' in again.text.replace(" ", "")


def test_the_sdk_raises_the_streams_time_limit(idle: LiveServer) -> None:
    job_id = queued_job(idle.url)
    started = time.monotonic()
    with Client(idle.url, api_key=ALICE) as client, pytest.raises(RequestTimeoutError):
        for event in client.job_events(job_id):
            assert event.kind == "progress" and event.job.status == "queued"
    assert 7.5 < time.monotonic() - started < 60


def test_a_finished_job_streams_its_outcome_at_once(idle: LiveServer) -> None:
    job_id = queued_job(idle.url)
    httpx.delete(f"{idle.url}/jobs/{job_id}", headers=auth(ALICE), timeout=10)
    with Client(idle.url, api_key=ALICE) as client:
        events = list(client.job_events(job_id))
    assert [e.kind for e in events] == ["progress", "final"] and events[-1].job.status == "cancelled"


def test_the_async_client_follows_a_finished_job(idle: LiveServer) -> None:
    import asyncio

    job_id = queued_job(idle.url)
    httpx.delete(f"{idle.url}/jobs/{job_id}", headers=auth(ALICE), timeout=10)

    async def follow() -> list[tuple[str, str]]:
        async with AsyncClient(idle.url, api_key=ALICE) as client:
            return [(e.kind, e.job.status) async for e in client.job_events(job_id)]

    assert asyncio.run(follow()) == [("progress", "cancelled"), ("final", "cancelled")]
