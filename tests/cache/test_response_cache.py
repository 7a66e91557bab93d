"""The response cache over real servers with the real tiny model: what hits, what never does, TTL,
the byte bound, keys kept apart, Redis shared by two gateways, and what it must not bypass."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cache.helpers import image_uri, infer, metric, server, settings, vqa
from tests.jobs.helpers import free_port
from vlserve.config import ApiKey
from vlserve.service.auth import hash_key

ON = {"response": {"enabled": True}}


def cached(envelope: dict[str, Any]) -> bool:
    return bool(envelope["result"]["metadata"]["cached"])


@pytest.fixture(scope="module")
def on(engine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server with the response cache on (memory, per-key scope); each test its own images."""
    with server(engine, settings(tmp_path_factory.mktemp("on"), **ON)) as url:
        yield url


def response_metric(url: str, name: str) -> float:
    return metric(url, f"vlserve_cache_{name}", cache="response", engine="")


def test_a_repeated_request_is_answered_from_the_cache(on: str) -> None:
    url = on
    hits, stored = response_metric(url, "hits_total"), response_metric(url, "stored_total")
    body = vqa(image_uri(1))
    first, second = infer(url, body), infer(url, body)
    assert not cached(first) and cached(second)
    assert second["result"]["answer"] == first["result"]["answer"]
    assert second["result"]["confidence"] == first["result"]["confidence"]
    keep = ("input_tokens", "output_tokens", "image_tokens", "model", "finish_reason")
    assert {k: second["result"]["metadata"][k] for k in keep} == {k: first["result"]["metadata"][k] for k in keep}
    assert response_metric(url, "hits_total") == hits + 1
    assert response_metric(url, "stored_total") == stored + 1

    # The stream of a cached answer: the whole text as one token event, then the final event.
    with httpx.stream("POST", url + "/infer_stream", json=body, timeout=60) as response:
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event:")]
        assert response.status_code == 200
    assert events == ["token", "final"]
    stream = httpx.post(url + "/infer_stream", json=body, timeout=60).text
    final = json.loads(stream.split("event: final\ndata: ")[1].split("\n")[0])
    assert final["metadata"]["cached"] is True and final["answer"] == first["result"]["answer"]


def test_a_changed_byte_option_text_or_task_never_hits(on: str) -> None:
    url = on
    base = vqa(image_uri(2))
    assert not cached(infer(url, base))
    variants = [
        vqa(image_uri(2, flip=(5, 7, 1))),  # one pixel, so the bytes differ
        vqa(image_uri(2), max_tokens=7),  # an option
        vqa(image_uri(2), stop=["zz"]),
        vqa(image_uri(2), seed=3),
        vqa(image_uri(2), text="What is shown here?"),  # the text
        {**vqa(image_uri(2)), "task": "captioning", "text": "What is shown?"},  # the task
    ]
    for body in variants:
        assert not cached(infer(url, body)), body
    assert cached(infer(url, base))  # and the original still hits
    # Options that change only the delivery share the entry.
    assert cached(infer(url, vqa(image_uri(2), priority=3)))


def test_a_callers_schema_is_part_of_the_key(on: str) -> None:
    def extract(schema: dict[str, Any]) -> dict[str, Any]:
        return {"task": "extract", "images": [image_uri(3)], "text": "Read it.",
                "options": {"max_tokens": 40, "json_schema": schema}}

    one = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    two = {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
    url = on
    if "extract" not in {t["name"] for t in httpx.get(url + "/tasks").json()["tasks"]}:
        pytest.skip("no task with a caller's schema on this server")
    first = infer(url, extract(one))
    assert not cached(infer(url, extract(two)))
    again = infer(url, extract(one))
    assert cached(again) and again["result"]["answer"] == first["result"]["answer"]


def test_only_deterministic_requests_are_cached(on: str) -> None:
    url = on
    sampled = vqa(image_uri(4), temperature=0.8)
    assert not cached(infer(url, sampled)) and not cached(infer(url, sampled))
    seeded = vqa(image_uri(4), temperature=0.8, seed=11)
    first = infer(url, seeded)
    second = infer(url, seeded)
    assert cached(second) and second["result"]["answer"] == first["result"]["answer"]


def test_entries_expire_after_their_ttl(engine: Any, tmp_path: Path) -> None:
    with server(engine, settings(tmp_path, response={"enabled": True, "task_ttl_seconds": {"vqa": 4.0}})) as url:
        body = vqa(image_uri(5))
        infer(url, body)
        assert cached(infer(url, body))
        time.sleep(4.5)
        assert not cached(infer(url, body))
        assert metric(url, "vlserve_cache_expirations_total", cache="response", engine="") == 1


def test_the_byte_bound_evicts_the_least_recently_used(engine: Any, tmp_path: Path) -> None:
    a, b = vqa(image_uri(6)), vqa(image_uri(7))
    with server(engine, settings(tmp_path, **ON)) as url:
        infer(url, a)
        size = metric(url, "vlserve_cache_bytes", cache="response", engine="")  # one entry's bytes
    bound = int(size * 1.6)  # room for one answer, not two
    with server(engine, settings(tmp_path, response={"enabled": True, "max_bytes": bound})) as url:
        infer(url, a)
        assert cached(infer(url, a))
        infer(url, b)  # pushes a out
        assert not cached(infer(url, a))
        assert metric(url, "vlserve_cache_evictions_total", cache="response", engine="") >= 1
        assert 0 < metric(url, "vlserve_cache_bytes", cache="response", engine="") <= bound


def test_disabled_tasks_and_privacy_mode_are_never_cached(engine: Any, tmp_path: Path) -> None:
    with server(engine, settings(tmp_path, response={"enabled": True, "disabled_tasks": ["vqa"]})) as url:
        body = vqa(image_uri(8))
        assert not cached(infer(url, body)) and not cached(infer(url, body))
    private = settings(tmp_path, **ON, extra={"privacy": {"enabled": True}})
    with server(engine, private) as url:
        body = vqa(image_uri(8))
        assert not cached(infer(url, body)) and not cached(infer(url, body))
        assert "vlserve_cache_hits_total{cache=\"response\"" not in httpx.get(url + "/metrics").text


KEYS = {"alice": "vls-alice-cache", "bob": "vls-bob-cache"}


def keyed(tmp: Path, scope: str) -> Any:
    keys = [ApiKey(id=name, sha256=hash_key(key), rate_per_minute=6).model_dump() for name, key in KEYS.items()]
    return settings(tmp, scope=scope, **ON, extra={"auth": {"keys": keys}})


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}


def test_keys_have_their_own_entries_unless_shared(engine: Any, tmp_path: Path) -> None:
    body = vqa(image_uri(9))
    with server(engine, keyed(tmp_path, "key")) as url:
        infer(url, body, **bearer("alice"))
        assert cached(infer(url, body, **bearer("alice")))
        assert not cached(infer(url, body, **bearer("bob")))  # bob cannot learn that alice asked
    with server(engine, keyed(tmp_path, "shared")) as url:
        infer(url, body, **bearer("alice"))
        assert cached(infer(url, body, **bearer("bob")))


def test_a_cached_answer_does_not_bypass_auth_rate_limits_or_validation(engine: Any, tmp_path: Path) -> None:
    with server(engine, keyed(tmp_path, "shared")) as url:
        body = vqa(image_uri(10))
        infer(url, body, **bearer("alice"))
        assert cached(infer(url, body, **bearer("alice")))
        assert httpx.post(url + "/infer", json=body, timeout=30).status_code == 401
        assert httpx.post(url + "/infer", json=body, headers={"Authorization": "Bearer wrong"},
                          timeout=30).status_code == 401
        codes = [httpx.post(url + "/infer", json=body, headers=bearer("alice"), timeout=30).json()["code"]
                 for _ in range(6)]
        assert 4029 in codes  # 6 a minute, 2 already spent: the cache does not raise the rate
        too_long = {**body, "text": "x" * 40_000}  # over limits.max_text_chars
        assert httpx.post(url + "/infer", json=too_long, headers=bearer("bob"), timeout=30).json()["code"] == 4000


def test_async_jobs_are_answered_from_the_cache(on: str) -> None:
    url = on
    body = vqa(image_uri(12))
    first = infer(url, body)
    job = httpx.post(url + "/jobs", json=body, timeout=30).json()["jobs"][0]
    deadline = time.monotonic() + 60
    while (state := httpx.get(f"{url}/jobs/{job['id']}", timeout=10).json())["status"] not in ("succeeded",
                                                                                                "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    result = state["result"]["result"]
    assert result["metadata"]["cached"] is True and result["answer"] == first["result"]["answer"]


def test_failures_are_not_cached(on: str) -> None:
    url = on
    stored = response_metric(url, "stored_total")
    broken = vqa("data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAA")  # a truncated PNG
    for _ in range(2):
        assert httpx.post(url + "/infer", json=broken, timeout=30).json()["code"] == 1001
    assert response_metric(url, "stored_total") == stored


def test_redis_is_shared_by_gateways_and_a_model_change_never_hits(engine: Any, moe_engine: Any, tmp_path: Path,
                                                                   redis_url: str) -> None:
    shared = {"response": {"enabled": True, "backend": "redis", "redis_url": redis_url,
                           "redis_prefix": f"test-{time.time_ns()}:"}, "scope": "shared"}
    body = vqa(image_uri(13))
    with server(engine, settings(tmp_path, **shared)) as one, server(engine, settings(tmp_path, **shared)) as two, \
            server(moe_engine, settings(tmp_path, **shared)) as other_model:
        first = infer(one, body)
        again = infer(two, body)  # another gateway, same model: the entry is in Redis
        assert cached(again) and again["result"]["answer"] == first["result"]["answer"]
        assert not cached(infer(other_model, body))  # another model: never its answer
        assert metric(two, "vlserve_cache_hits_total", cache="response", engine="") == 1


def test_redis_down_answers_without_the_cache(engine: Any, tmp_path: Path) -> None:
    down = {"response": {"enabled": True, "backend": "redis", "redis_url": f"redis://127.0.0.1:{free_port()}/0",
                         "redis_timeout": 0.2}}
    with server(engine, settings(tmp_path, **down)) as url:
        body = vqa(image_uri(14))
        assert not cached(infer(url, body)) and not cached(infer(url, body))
        assert metric(url, "vlserve_cache_errors_total", cache="response", engine="") >= 2
