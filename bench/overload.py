"""Overload: 10x more concurrent requests than a lane can hold.

    python bench/overload.py [--capacity 4] [--factor 10]

The interactive lane holds ``capacity`` requests (2 running + 2 queued by default). We send
``factor * capacity`` at once and report how fast the refused ones get their 2001 answer (target
p99 < 50 ms; the decision is made before any media work) next to the latency of the admitted ones.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import percentile, serve_process, summary, vqa  # noqa: E402

from vlserve.config import Settings  # noqa: E402


async def flood(url: str, n: int, max_tokens: int) -> tuple[list[float], list[float], int]:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int) -> tuple[int, float]:
            start = time.perf_counter()
            response = await client.post(url + "/infer", json=vqa(i, max_tokens))
            return response.json()["code"], time.perf_counter() - start

        # Open the connections first so connection setup is not counted as server time.
        await asyncio.gather(*(client.get(url + "/healthz") for _ in range(n)))
        results = await asyncio.gather(*(one(i) for i in range(n)))
    refused = [t for code, t in results if code == 2001]
    admitted = [t for code, t in results if code == 0]
    return refused, admitted, sum(code not in (0, 2001) for code, _ in results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--capacity", type=int, default=4)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=64)
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
    with serve_process(settings) as url:
        refused, admitted, other = asyncio.run(flood(url, n, args.max_tokens))
    print(f"{n} concurrent requests against a lane of capacity {args.capacity} ({running} running)")
    print(f"refused with 2001: {len(refused):>3}  time to answer: {summary(refused)}")
    print(f"admitted:          {len(admitted):>3}  latency:        {summary(admitted)}")
    print(f"other outcomes: {other}")
    ratio = percentile(refused, 99) / percentile(admitted, 50)
    print(f"refusal p99 / admitted p50: {ratio:.3f} (target: refusal p99 < 50 ms)")


if __name__ == "__main__":
    main()
