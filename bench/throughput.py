"""Throughput with batching: N concurrent requests through the server vs the same N one at a time.

    python bench/throughput.py [--n 16] [--max-tokens 32] [--model tiny]

Both runs go through the same HTTP server and engine; only the arrival pattern differs. Target:
≥ 4× at 16 concurrent requests on the tiny model.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import serve_process, vqa  # noqa: E402

from vlserve.config import Settings  # noqa: E402


async def run(url: str, n: int, max_tokens: int, concurrent: bool) -> tuple[float, list[str]]:
    bodies = [vqa(i, max_tokens) for i in range(n)]
    async with httpx.AsyncClient(timeout=600) as client:
        start = time.perf_counter()
        if concurrent:
            responses = await asyncio.gather(*(client.post(url + "/infer", json=b) for b in bodies))
        else:
            responses = [await client.post(url + "/infer", json=b) for b in bodies]
        elapsed = time.perf_counter() - start
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return elapsed, [r.json()["result"]["answer"] for r in responses]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    settings = Settings.model_validate({
        "model": args.model,
        "scheduling": {"lanes": {"interactive": {"concurrency": args.n, "queue_size": args.n}, "batch": {},
                                 "video": {}}, "batch_window_ms": 20},
        "limits": {"max_pixels": 64 * 32 * 32},
    })
    with serve_process(settings) as url:
        asyncio.run(run(url, 2, args.max_tokens, True))  # warm-up
        one_by_one, answers_seq = asyncio.run(run(url, args.n, args.max_tokens, False))
        together, answers_batch = asyncio.run(run(url, args.n, args.max_tokens, True))
        detail = httpx.get(url + "/readyz").json()
    tokens = args.n * args.max_tokens
    print(f"{args.n} requests x {args.max_tokens} tokens, model {args.model}")
    print(f"{'mode':<28}{'seconds':>10}{'req/s':>10}{'tok/s':>10}")
    print(f"{'one at a time':<28}{one_by_one:>10.2f}{args.n / one_by_one:>10.2f}{tokens / one_by_one:>10.1f}")
    label = f"{args.n} concurrent (batched)"
    print(f"{label:<28}{together:>10.2f}{args.n / together:>10.2f}{tokens / together:>10.1f}")
    print(f"speedup: {one_by_one / together:.2f}x (target >= 4x); identical answers: {answers_seq == answers_batch}; "
          f"largest batch {detail['largest_batch']}")


if __name__ == "__main__":
    main()
