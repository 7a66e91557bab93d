"""Overload: 10x more concurrent requests than a lane can hold.

    python bench/overload.py [--capacity 4] [--factor 10] [--rounds 3] [--client aiohttp|httpx]

The interactive lane holds ``capacity`` requests (2 running + 2 queued by default). Each round
sends ``factor * capacity`` requests at once over connections opened beforehand, and we report how
fast the refused ones get their 2001 answer (target p99 < 50 ms: the decision is made before any
media work) next to the latency of the admitted ones. A warm-up round comes first.

The client runs on the same machine as the server, so its own CPU time counts against the
figures. aiohttp (the default) costs little per request; ``--client httpx`` shows what a heavier
client adds on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import percentile, serve_process, summary, vqa  # noqa: E402

from vlserve.config import Settings  # noqa: E402

Outcome = tuple[int, float]  # (envelope code, seconds to the whole answer)


async def flood_aiohttp(url: str, bodies: list[bytes]) -> list[Outcome]:
    connector = aiohttp.TCPConnector(limit=len(bodies))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(600)) as session:
        async def warm() -> None:
            async with session.get(url + "/healthz") as response:
                await response.read()

        async def one(body: bytes) -> Outcome:
            start = time.perf_counter()
            async with session.post(url + "/infer", data=body, headers={"content-type": "application/json"}) as r:
                code = json.loads(await r.read())["code"]
            return code, time.perf_counter() - start

        await asyncio.gather(*(warm() for _ in bodies))  # open the connections first: setup is not server time
        return await asyncio.gather(*(one(b) for b in bodies))


async def flood_httpx(url: str, bodies: list[bytes]) -> list[Outcome]:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=len(bodies))) as client:
        async def one(body: bytes) -> Outcome:
            start = time.perf_counter()
            response = await client.post(url + "/infer", content=body, headers={"content-type": "application/json"})
            return response.json()["code"], time.perf_counter() - start

        await asyncio.gather(*(client.get(url + "/healthz") for _ in bodies))
        return await asyncio.gather(*(one(b) for b in bodies))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    running = max(1, args.capacity // 2)
    settings = Settings.model_validate({
        "model": args.model,
        "scheduling": {"lanes": {"interactive": {"concurrency": running, "queue_size": args.capacity - running},
                                 "batch": {}, "video": {}}},
        "limits": {"max_pixels": 64 * 32 * 32},
    })
    n = args.capacity * args.factor
    flood = flood_aiohttp if args.client == "aiohttp" else flood_httpx
    refused: list[float] = []
    admitted: list[float] = []
    other = 0
    with serve_process(settings) as url:
        for round_ in range(args.rounds + 1):
            bodies = [json.dumps(vqa(round_ * n + i, args.max_tokens)).encode() for i in range(n)]
            outcomes = asyncio.run(flood(url, bodies))
            if round_ == 0:
                continue  # warm-up
            refused += [t for code, t in outcomes if code == 2001]
            admitted += [t for code, t in outcomes if code == 0]
            other += sum(code not in (0, 2001) for code, _ in outcomes)
    print(f"{args.rounds} rounds of {n} concurrent requests against a lane of capacity {args.capacity} "
          f"({running} running), client {args.client}")
    print(f"refused with 2001: {len(refused):>3}  time to answer: {summary(refused)}")
    print(f"admitted:          {len(admitted):>3}  latency:        {summary(admitted)}")
    print(f"other outcomes: {other}")
    ratio = percentile(refused, 99) / percentile(admitted, 50)
    print(f"refusal p99 / admitted p50: {ratio:.3f}; refusal p99 {percentile(refused, 99) * 1000:.1f} ms "
          f"(target < 50 ms)")


if __name__ == "__main__":
    main()
