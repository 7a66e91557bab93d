"""Async jobs over a real server (FakeEngine behind it): request order, the SDK's jobs methods,
and a server configured with one lane still running every lane's jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import KEYS, make_settings, run_server
from tests.api.samples import data_uri, png_bytes
from vlserve import errors
from vlserve.api.app import create_app
from vlserve.client import Answer, AsyncClient, Client, Job, JobRequest
from vlserve.config import ApiKey
from vlserve.service.auth import hash_key
from vlserve.testing import FakeEngine

ALICE, BOB = KEYS["alice"], KEYS["bob"]


def image(seed: int) -> dict[str, Any]:
    return {"images": [data_uri(png_bytes(seed=seed))], "options": {"max_tokens": 8}}


def serve(tmp: Path, engine: FakeEngine, **jobs: Any) -> Iterator[str]:
    keys = [ApiKey(id=name, sha256=hash_key(KEYS[name])).model_dump() for name in ("alice", "bob")]
    settings = make_settings(tmp, auth={"keys": keys},
                             jobs={"sqlite_path": str(tmp / "jobs.sqlite3"), **jobs})
    return run_server(create_app(settings, engine=engine))


@pytest.fixture(scope="module")
def fake() -> FakeEngine:
    return FakeEngine("fake", reply="a small grey square")


@pytest.fixture(scope="module")
def url(fake: FakeEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve(tmp_path_factory.mktemp("jobs"), fake)


def test_a_batch_comes_back_in_request_order_with_task_and_lane(url: str) -> None:
    bodies = [{"task": "ocr", **image(1)}, {"task": "captioning", **image(2)}, {"task": "ocr", **image(3)},
              {"task": "vqa", "text": "what?", **image(4)}, {"task": "captioning", **image(5)}]
    response = httpx.post(url + "/jobs", json=bodies, headers={"Authorization": f"Bearer {ALICE}"}, timeout=30)
    assert response.status_code == 202, response.text
    jobs = response.json()["jobs"]
    assert [j["task"] for j in jobs] == ["ocr", "captioning", "ocr", "vqa", "captioning"]
    assert [j["lane"] for j in jobs] == ["batch", "interactive", "batch", "interactive", "interactive"]
    assert len({j["id"] for j in jobs}) == 5


def test_sdk_submit_wait_get_list(url: str) -> None:
    with Client(url, api_key=ALICE) as client:
        jobs = client.submit_jobs([JobRequest("ocr", images=[png_bytes(seed=6)], options={"max_tokens": 8}),
                                   {"task": "vqa", "text": "colour?", **image(7)}])
        assert [(j.task, j.lane) for j in jobs] == [("ocr", "batch"), ("vqa", "interactive")]
        assert all(isinstance(j, Job) for j in jobs)
        done = client.wait_all(jobs, timeout=30, poll_interval=0.05)
        assert [j.id for j in done] == [j.id for j in jobs]
        for job in done:
            assert job.done and job.status == "succeeded" and job.error is None
            assert isinstance(job.answer, Answer) and job.answer.answer == "a small grey square"
            assert job.answer.metadata["model"] == "fake"
        assert client.get_job(jobs[0].id).status == "succeeded"
        assert client.wait(jobs[1]).answer == done[1].answer
        listed = client.list_jobs(status="succeeded")
        assert {j.id for j in jobs} <= {j.id for j in listed}
        with pytest.raises(errors.RequestError):
            client.cancel_job(jobs[0])  # finished: cannot be cancelled
    with Client(url, api_key=BOB) as other:  # another key's job is not found, like a missing one
        with pytest.raises(errors.NotFoundError):
            other.get_job(jobs[0].id)
        assert jobs[0].id not in {j.id for j in other.list_jobs()}
        with pytest.raises(errors.NotFoundError):
            other.get_job("../tasks")


def test_sdk_failed_jobs_carry_the_typed_error(url: str, fake: FakeEngine) -> None:
    def failed_job(error: errors.VlserveError) -> Job:
        fake.fail_with(error)
        try:
            with Client(url, api_key=ALICE) as client:
                return client.wait(client.submit_jobs([{"task": "captioning", **image(8)}])[0], timeout=30,
                                   poll_interval=0.05)
        finally:
            fake.fail_with(None)

    job = failed_job(errors.RequestError("the prompt is too long for this model"))
    assert job.status == "failed" and job.answer is None
    assert isinstance(job.error, errors.RequestError) and job.error.code == 4000
    assert "too long" in job.error.message
    broken = failed_job(errors.EngineError("CUDA error at /srv/model.py:12"))
    assert broken.error is not None and broken.error.code == 5000
    assert "/srv" not in broken.error.message  # the server keeps internals to its log


def test_async_sdk_and_cancel(tmp_path: Path) -> None:
    engine = FakeEngine("idle")
    for url in serve(tmp_path, engine, workers=0):  # nothing runs: jobs stay queued

        async def main(url: str) -> tuple[Job, Job, list[Job]]:
            async with AsyncClient(url, api_key=ALICE) as client:
                [job] = await client.submit_jobs([JobRequest("captioning", images=[png_bytes(seed=9)])])
                cancelled = await client.cancel_job(job)
                with pytest.raises(TimeoutError):
                    [queued] = await client.submit_jobs([{"task": "vqa", "text": "?", **image(10)}])
                    await client.wait(queued, timeout=0.2, poll_interval=0.05)
                return job, cancelled, await client.list_jobs(status="cancelled")

        job, cancelled, listed = asyncio.run(main(url))
        assert job.status == "queued" and (job.task, job.lane) == ("captioning", "interactive")
        assert cancelled.status == "cancelled" and cancelled.done
        assert [j.id for j in listed] == [job.id]
        assert engine.requests == []


def test_one_configured_lane_keeps_the_batch_lane_running(tmp_path: Path) -> None:
    """The docs' example configures only the interactive lane; ocr jobs (batch lane) still run."""
    settings = make_settings(tmp_path, scheduling={"lanes": {"interactive": {"concurrency": 2}}},
                             jobs={"sqlite_path": str(tmp_path / "j.sqlite3")})
    for url in run_server(create_app(settings, engine=FakeEngine("fake"))):
        with Client(url) as client:
            job = client.wait(client.submit_jobs([{"task": "ocr", **image(11)}])[0], timeout=20, poll_interval=0.05)
            assert (job.lane, job.status) == ("batch", "succeeded")
            assert set(httpx.get(url + "/readyz").json()["lanes"]) >= {"interactive", "batch", "video"}
