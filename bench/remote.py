"""Gateway overhead: requests/s and latency through a vlserve gateway (RemoteEngine pool) versus
straight to its upstream, same load, same run.

    python bench/remote.py [--n 48] [--rounds 3] [--concurrency 8] [--max-tokens 8] [--task vqa]

The upstream is ``vlserve serve`` with the tiny model in its own process; the gateway is another
``vlserve serve`` whose ``main`` is a pool of that one upstream (``remote.upstreams``). Rounds
alternate direct / gateway on the same request bodies, so both sides see the same machine load.
The gateway adds a second HTTP hop: the task prompt, admission and media checks run on the gateway,
the upstream receives an OpenAI chat request with the image re-encoded. Goal (issue 10): gateway
≥ 95 % of the upstream's throughput, added p50 latency < 5 ms. On a small shared CPU the client,
gateway and upstream compete for the same cores, so the gateway's cost counts twice here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from common import percentile, serve_process, vqa  # noqa: E402

from vlserve.config import Settings  # noqa: E402


async def load(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Seconds for all ``bodies`` at ``concurrency``, and each request's latency."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(600)) as session:
        async def one(body: bytes) -> None:
            async with gate:
                started = time.perf_counter()
                async with session.post(url + "/infer", data=body,
                                        headers={"content-type": "application/json"}) as response:
                    text = await response.read()
                    assert response.status == 200, text[:300]
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=8)
    args = parser.parse_args()
    bodies = [json.dumps(vqa(i, args.max_tokens)).encode() for i in range(args.n)]
    lanes = {"interactive": {"concurrency": args.concurrency, "queue_size": args.n}}
    upstream = Settings.model_validate({"model": "tiny", "expose_ui": False, "jobs": {"workers": 0},
                                        "scheduling": {"lanes": lanes}})
    with serve_process(upstream) as up:
        gateway = Settings.model_validate({
            "remote": {"upstreams": [up], "dialect": "vlserve", "max_concurrency": args.concurrency * 2},
            "model_name": "tiny", "expose_ui": False, "jobs": {"workers": 0}, "scheduling": {"lanes": lanes}})
        with serve_process(gateway) as gw:
            asyncio.run(load(up, bodies[:4], 4))  # warm both: connections, first-request paths
            asyncio.run(load(gw, bodies[:4], 4))
            results: dict[str, list[tuple[float, list[float]]]] = {"direct": [], "gateway": []}
            for _ in range(args.rounds):
                results["direct"].append(asyncio.run(load(up, bodies, args.concurrency)))
                results["gateway"].append(asyncio.run(load(gw, bodies, args.concurrency)))
    print(f"{args.n} vqa requests x {args.rounds} rounds, concurrency {args.concurrency}, "
          f"max_tokens {args.max_tokens}, tiny model, 64 px images")
    summary = {}
    for side, runs in results.items():
        rates = [args.n / seconds for seconds, _ in runs]
        all_latencies = [x for _, lat in runs for x in lat]
        summary[side] = (statistics.median(rates), percentile(all_latencies, 50), percentile(all_latencies, 99))
        rate, p50, p99 = summary[side]
        print(f"  {side:8s} {rate:6.2f} req/s (median of rounds: {', '.join(f'{r:.2f}' for r in rates)})  "
              f"p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms")
    (rd, p50d, p99d), (rg, p50g, p99g) = summary["direct"], summary["gateway"]
    print(f"gateway / direct throughput: {rg / rd * 100:.1f} % (goal >= 95 %); "
          f"added p50 {(p50g - p50d) * 1000:+.1f} ms (goal < 5 ms), added p99 {(p99g - p99d) * 1000:+.1f} ms")


if __name__ == "__main__":
    main()
