"""Throughput with batching: N concurrent requests through the server vs the same N one at a time.

    python bench/throughput.py [--n 16] [--max-tokens 32] [--rounds 3] [--model tiny]

Both modes go through the same HTTP server and engine; only the arrival pattern differs. Each
round runs both modes, and the medians are compared. Target: ≥ 4× at 16 concurrent requests on
the tiny model. The client is aiohttp with bodies encoded beforehand, so that its own CPU time on
the shared machine stays small.
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
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import serve_process, vqa  # noqa: E402

from vlserve.config import Settings  # noqa: E402


async def run(url: str, bodies: list[bytes], concurrent: bool) -> tuple[float, list[str]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(600)) as session:
        async def post(body: bytes) -> str:
            async with session.post(url + "/infer", data=body, headers={"content-type": "application/json"}) as r:
                payload = json.loads(await r.read())
                assert r.status == 200, payload
                return str(payload["result"]["answer"])

        start = time.perf_counter()
        if concurrent:
            answers = await asyncio.gather(*(post(b) for b in bodies))
        else:
            answers = [await post(b) for b in bodies]
        return time.perf_counter() - start, list(answers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    settings = Settings.model_validate({
        "model": args.model,
        "scheduling": {"lanes": {"interactive": {"concurrency": args.n, "queue_size": args.n}, "batch": {},
                                 "video": {}}, "batch_window_ms": 20},
        "limits": {"max_pixels": 64 * 32 * 32},
    })
    bodies = [json.dumps(vqa(i, args.max_tokens)).encode() for i in range(args.n)]
    one_by_one, together, same = [], [], True
    with serve_process(settings) as url:
        asyncio.run(run(url, bodies, True))  # warm-up at full width: the first wide batch allocates
        for _ in range(args.rounds):
            seconds, answers_seq = asyncio.run(run(url, bodies, False))
            one_by_one.append(seconds)
            seconds, answers_batch = asyncio.run(run(url, bodies, True))
            together.append(seconds)
            same = same and answers_seq == answers_batch
        detail = httpx.get(url + "/readyz").json()
    seq, batch = statistics.median(one_by_one), statistics.median(together)
    tokens = args.n * args.max_tokens
    print(f"{args.n} requests x {args.max_tokens} tokens, model {args.model}, median of {args.rounds} rounds")
    print(f"{'mode':<28}{'seconds':>10}{'req/s':>10}{'tok/s':>10}   all rounds (s)")
    print(f"{'one at a time':<28}{seq:>10.2f}{args.n / seq:>10.2f}{tokens / seq:>10.1f}   "
          + ", ".join(f"{s:.2f}" for s in one_by_one))
    label = f"{args.n} concurrent (batched)"
    print(f"{label:<28}{batch:>10.2f}{args.n / batch:>10.2f}{tokens / batch:>10.1f}   "
          + ", ".join(f"{s:.2f}" for s in together))
    print(f"speedup: {seq / batch:.2f}x (target >= 4x); identical answers: {same}; "
          f"largest batch {detail['largest_batch']}")


if __name__ == "__main__":
    main()
