"""Fairness between clients over a real server: a client flooding a lane waits behind its own
requests (and is refused beyond its share of places) while another client's request goes first.
Budget shares per client are checked on the budgets themselves (no timing anywhere)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.api.helpers import make_settings, run_server
from tests.api.samples import data_uri, png_bytes
from vlserve.api.app import create_app
from vlserve.scheduling.budget import Budget, Budgets, Cost
from vlserve.service.auth import hash_key
from vlserve.testing import FakeEngine

KEYS = {"flood": "key-of-the-flood", "user": "key-of-a-user"}
MB = 1 << 20


def _settings(tmp_path: Path, **interactive: Any) -> Any:
    return make_settings(
        tmp_path,
        auth={"keys": [{"id": name, "sha256": hash_key(key)} for name, key in KEYS.items()]},
        scheduling={"lanes": {"interactive": {"concurrency": 1, "queue_size": 8, **interactive}}})


def _request(who: str, n: int) -> dict[str, Any]:
    return {"task": "vqa", "images": [data_uri(png_bytes(seed=n))], "text": f"{who} {n}", "options": {"max_tokens": 2}}


def _sender(request: Any) -> str:
    """The ``who n`` text a request was sent with (the task's instructions come before it)."""
    text = " ".join(p.text for m in request.messages for p in m.parts if hasattr(p, "text"))
    return " ".join(text.split()[-2:])


async def _until(check: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def waiting(url: str) -> int:
    return int(httpx.get(url + "/readyz").json()["lanes"]["interactive"]["waiting"])


def test_a_flooding_key_waits_behind_its_own_requests_and_gets_at_most_its_share(tmp_path: Path) -> None:
    # One running slot and 8 queued places; max_client_share 0.5: at most 4 places per key.
    engine = FakeEngine("main-fake")

    async def run(url: str) -> tuple[list[int], httpx.Response, list[httpx.Response]]:
        def client(who: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(base_url=url, timeout=120, headers={"authorization": f"Bearer {KEYS[who]}"})

        async with client("flood") as flood, client("user") as user:
            engine.hold()
            first = asyncio.create_task(flood.post("/infer", json=_request("flood", 0)))
            await _until(lambda: engine.active == 1)
            queued = [asyncio.create_task(flood.post("/infer", json=_request("flood", n))) for n in range(1, 4)]
            await _until(lambda: waiting(url) == 3)
            refused = [(await flood.post("/infer", json=_request("flood", n))).status_code for n in (4, 5)]
            served = asyncio.create_task(user.post("/infer", json=_request("user", 9)))  # last to arrive
            await _until(lambda: waiting(url) == 4)  # prepared and waiting for the slot, like the flood's
            engine.release()
            return refused, await served, [await first, *await asyncio.gather(*queued)]

    for url in run_server(create_app(_settings(tmp_path), engine=engine)):
        refused, served, floods = asyncio.run(run(url))
        assert refused == [503, 503]  # the flood's share is full; the lane still has room for others
        assert served.status_code == 200 and all(r.status_code == 200 for r in floods)
        order = [_sender(r) for r in engine.requests]
        # The user's request arrived after three queued flood requests, yet runs right after the
        # flood's running one: its key had nothing running.
        assert order[:2] == ["flood 0", "user 9"], order
        assert sorted(order[2:]) == ["flood 1", "flood 2", "flood 3"]


def test_without_keys_the_client_address_is_the_client(tmp_path: Path) -> None:
    engine = FakeEngine("main-fake")
    settings = make_settings(tmp_path, scheduling={"lanes": {"interactive": {
        "concurrency": 1, "queue_size": 3, "max_client_share": 0.5}}})

    async def run(url: str) -> list[int]:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            engine.hold()
            held = [asyncio.create_task(client.post("/infer", json=_request("me", n))) for n in range(2)]
            await _until(lambda: httpx.get(url + "/readyz").json()["lanes"]["interactive"]["occupancy"] == 2)
            third = (await client.post("/infer", json=_request("me", 2))).status_code
            engine.release()
            return [third, *[(await h).status_code for h in held]]

    for url in run_server(create_app(settings, engine=engine)):
        assert asyncio.run(run(url)) == [503, 200, 200]  # 2 of 4 places per address


def _budgets(share: float) -> Budgets:
    return Budgets(Budget("server", memory_bytes=100 * MB, visual_tokens=None),
                   {"a": Budget("a lane", memory_bytes=None, visual_tokens=None)}, client_share=share)


def test_a_client_past_its_budget_share_waits_while_others_go_past() -> None:
    async def run() -> list[str]:
        budgets = _budgets(0.5)
        order: list[str] = []
        held = await budgets.reserve("a", Cost(40 * MB), timeout=5, client="flood")

        async def wait(name: str, client: str, cost: int) -> None:
            reservation = await budgets.reserve("a", Cost(cost * MB), timeout=5, client=client)
            order.append(name)
            await asyncio.sleep(0.01)
            reservation.release()

        flood = asyncio.create_task(wait("flood", "flood", 20))  # 60 MB > its 50 MB share: waits
        await asyncio.sleep(0.01)
        user = asyncio.create_task(wait("user", "user", 30))  # arrives later, fits: goes first
        await asyncio.sleep(0.05)
        assert order == ["user"]
        held.release()
        await asyncio.gather(flood, user)
        assert budgets.usage()["server"]["memory_bytes"] == 0 and budgets.by_client == {}
        return order

    assert asyncio.run(run()) == ["user", "flood"]


def test_a_request_above_the_share_runs_when_its_client_holds_nothing() -> None:
    async def run() -> None:
        budgets = _budgets(0.25)
        big = await budgets.reserve("a", Cost(90 * MB), timeout=5, client="one")  # alone: any size that fits
        assert budgets.by_client == {"one": Cost(90 * MB)}
        big.release()
        assert budgets.by_client == {}

    asyncio.run(run())
