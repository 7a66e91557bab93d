"""Several gateway replicas (docs/deploy.md#several-gateways), as real processes on loopback: two
`vlserve serve` gateways, one real redis-server, and one upstream engine (a counting stand-in for
vLLM, tests/deploy/replicas.py) that both gateways' pools send to.

- a key's rate limit is one budget across both gateways: requests alternated between them are
  refused with 4029 once the key's shared budget is spent;
- files a request made on one gateway (3D models, in the shared artifact directory) download from
  the other, for the key that made them only;
- jobs submitted to either gateway are run to completion exactly once, across a SIGKILL of one
  gateway in the middle of its jobs: its leases expire, the other gateway takes those jobs over, no
  job is lost, none is answered twice by the upstream, and each outcome is stored once.
"""

from __future__ import annotations

import base64
import io
import shutil
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.deploy.replicas import CountingUpstream, Gateway, gateway_config, gateways, wait_for
from tests.jobs.helpers import start_redis
from vlserve.service.auth import hash_key

METERED, WORKER, OTHER = "vls-metered-key", "vls-worker-key", "vls-other-key"
KEYS = [{"id": "metered", "sha256": hash_key(METERED), "rate_per_minute": 2},
        {"id": "worker", "sha256": hash_key(WORKER), "rate_per_minute": 100_000},
        {"id": "other", "sha256": hash_key(OTHER), "rate_per_minute": 100_000}]


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    proc, port = start_redis(binary, tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[CountingUpstream, str]]:
    counting = CountingUpstream(words=5, delay=0.3)  # 1.5 s an answer: long enough to be killed midway
    with counting.serve() as url:
        yield counting, url


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, own_redis: str,
         upstream: tuple[CountingUpstream, str]) -> Iterator[list[Gateway]]:
    """Gateways A and B: same upstream, same Redis (jobs and rate limits), same artifact directory."""
    tmp = tmp_path_factory.mktemp("replicas")
    configs = [gateway_config(tmp, name, upstream=upstream[1], redis_url=own_redis, auth={"keys": KEYS})
               for name in ("gateway-a", "gateway-b")]
    with gateways(configs, tmp) as started:
        yield started


def png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (20, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_keys_rate_limit_holds_across_both_gateways(pair: list[Gateway]) -> None:
    headers = {"authorization": f"Bearer {METERED}"}
    started = time.monotonic()
    answers = [httpx.get(pair[i % 2].url + "/jobs", headers=headers, timeout=10) for i in range(4)]
    # The key may send 2 a minute (one more every 30 s), whichever gateway it asks: A and B each
    # answer once, then each refuses; with a budget per gateway both would have answered twice.
    assert time.monotonic() - started < 30, "too slow to tell: the bucket refilled meanwhile"
    assert [a.status_code for a in answers] == [200, 200, 429, 429], [a.text for a in answers]
    for refused in answers[2:]:
        assert refused.json()["code"] == 4029
        assert 1 <= int(refused.headers["retry-after"]) <= 31
    # Another key has its own budget.
    assert httpx.get(pair[1].url + "/jobs", headers={"authorization": f"Bearer {WORKER}"}).status_code == 200


def test_artifacts_made_on_one_gateway_download_from_the_other(pair: list[Gateway]) -> None:
    pytest.importorskip("manifold3d", reason="the recon3d extra builds the meshes")
    spec = {"name": "disc", "parts": [{"id": "d", "shape": "cylinder", "size": {"diameter": 40, "height": 5}}]}
    headers = {"authorization": f"Bearer {WORKER}"}
    built = httpx.post(pair[0].url + "/recon3d/build", json={"spec": spec, "formats": ["stl"]}, headers=headers,
                       timeout=60)
    assert built.status_code == 200, built.text
    path = built.json()["result"]["answer"]["files"]["stl"]
    here, there = (httpx.get(g.url + path, headers=headers, timeout=10) for g in pair)
    assert here.status_code == there.status_code == 200, there.text
    assert there.content == here.content and there.content
    # The owner record is shared too: another key gets the same 404 from either gateway.
    for gateway in pair:
        foreign = httpx.get(gateway.url + path, headers={"authorization": f"Bearer {OTHER}"}, timeout=10)
        assert foreign.status_code == 404 and foreign.json()["code"] == 4040


def test_jobs_run_once_across_a_sigkill_of_one_gateway(pair: list[Gateway],
                                                       upstream: tuple[CountingUpstream, str]) -> None:
    counting, _ = upstream
    a, b = pair
    headers = {"authorization": f"Bearer {WORKER}"}
    image = png()
    ids: dict[str, str] = {}  # marker -> job id
    for i in range(6):  # submitted to A and B in turn
        body = {"task": "vqa", "images": [image], "text": f"marker-{i}", "options": {"max_tokens": 8}}
        answer = httpx.post(pair[i % 2].url + "/jobs", json=body, headers=headers, timeout=10)
        assert answer.status_code == 202, answer.text
        ids[f"marker-{i}"] = answer.json()["jobs"][0]["id"]
    # Both gateways run 2 jobs each (jobs.workers = 2): A is killed with its two answers half sent.
    wait_for(lambda: counting.in_flight >= 4, timeout=30, what="both gateways' workers to be busy")
    a.kill()

    def job(marker: str) -> dict[str, Any]:
        answer = httpx.get(f"{b.url}/jobs/{ids[marker]}", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    # A's leases (2 s) expire; B takes its jobs back and runs them.
    wait_for(lambda: all(job(m)["status"] not in ("queued", "running") for m in ids), timeout=45,
             what="every job to finish on the surviving gateway", interval=0.2)
    jobs = {marker: job(marker) for marker in ids}
    assert all(j["status"] == "succeeded" for j in jobs.values()), jobs
    assert all(j["result"]["code"] == 0 and j["result"]["result"]["answer"] for j in jobs.values()), jobs
    # Exactly once to completion: each job's request was answered to the end once, by the upstream.
    assert {m: counting.finished[m] for m in ids} == dict.fromkeys(ids, 1), counting.finished
    # The killed gateway's jobs were started twice (the first answer cut off by the kill), the others once;
    # the store's fencing token (attempts) says the same.
    taken_over = {m for m in ids if counting.started[m] == 2}
    assert len(taken_over) == 2, counting.started
    assert all(counting.started[m] == 1 for m in set(ids) - taken_over), counting.started
    assert {m: j["attempts"] for m, j in jobs.items()} == {m: 2 if m in taken_over else 1 for m in ids}
