"""Continuous batching inside the engine, without HTTP: the same requests one at a time, all at
once, and arriving one after another while others generate.

    python bench/engine.py [--n 16] [--max-tokens 64] [--gap-ms 20] [--device auto] [--dtype auto]

"all at once" and "staggered" go through :class:`~vlserve.runtime.batching.BatchingEngine`; in
"staggered" a request arrives every ``--gap-ms``. With continuous batching it joins the running
batch at the next decode step; with dynamic batching (``continuous=False``, measured side by side)
it waits until the batch in flight has finished. Prints speedups over one at a time, the
continuous / dynamic ratio, and whether every answer is identical to running alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import numpy as np
from PIL import Image

from vlserve.runtime.batching import BatchingEngine
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, ImagePart, Message, SamplingParams, TextPart


def request(i: int, max_tokens: int) -> GenerationRequest:
    """An image question; every fourth asks for ``max_tokens``, the others for an eighth of it
    (answers of mixed lengths, as real traffic has)."""
    max_tokens = max_tokens if i % 4 == 0 else max(1, max_tokens // 8)
    pixels = np.random.default_rng(i).integers(0, 256, (64 + 8 * (i % 4), 64, 3), dtype=np.uint8)
    content = [ImagePart(Image.fromarray(pixels)), TextPart(f"What is in picture {i}?")]
    return GenerationRequest([Message("user", content)], SamplingParams(max_tokens=max_tokens))


async def together(batcher: BatchingEngine, requests: list[GenerationRequest],
                   gap: float) -> tuple[list[GenerationResult], list[float]]:
    async def one(i: int, r: GenerationRequest) -> tuple[GenerationResult, float]:
        await asyncio.sleep(i * gap)
        start = time.perf_counter()
        result = await batcher.generate(r)
        return result, time.perf_counter() - start

    outcomes = await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    return [r for r, _ in outcomes], [t for _, t in outcomes]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    engine = LocalEngine(args.model, device=args.device, dtype=args.dtype)  # type: ignore[arg-type]
    requests = [request(i, args.max_tokens) for i in range(args.n)]
    batcher = BatchingEngine(engine, max_batch=args.n, window_ms=5)
    dynamic = BatchingEngine(engine, max_batch=args.n, window_ms=5, continuous=False)
    engine.generate_batch(requests)  # warm-up at full width

    start = time.perf_counter()
    alone = [engine.generate_sync(r) for r in requests]
    t_alone = time.perf_counter() - start
    latency_alone = [r.timings["prepare_ms"] / 1000 + r.timings["generate_ms"] / 1000 for r in alone]

    rows = []
    gap = args.gap_ms / 1000
    for label, engine_, gap_ in (("all at once", batcher, 0.0),
                                 (f"staggered {args.gap_ms:g} ms, continuous", batcher, gap),
                                 (f"staggered {args.gap_ms:g} ms, dynamic", dynamic, gap)):
        start = time.perf_counter()
        results, latencies = asyncio.run(together(engine_, requests, gap_))
        elapsed = time.perf_counter() - start
        same = [r.token_ids for r in results] == [r.token_ids for r in alone]
        rows.append((label, elapsed, statistics.median(latencies), same))
    batcher.close()
    dynamic.close()

    tokens = sum(r.usage.output_tokens for r in alone)
    print(f"{args.n} image requests of {args.max_tokens} or {max(1, args.max_tokens // 8)} tokens, "
          f"model {args.model} on {engine.device} "
          f"({str(engine.model.dtype).removeprefix('torch.')})")
    print(f"{'mode':<32}{'seconds':>9}{'tok/s':>9}{'median latency':>16}{'speedup':>9}  identical")
    print(f"{'one at a time':<32}{t_alone:>9.2f}{tokens / t_alone:>9.0f}"
          f"{statistics.median(latency_alone) * 1000:>13.0f} ms{1.0:>8.2f}x  -")
    for label, elapsed, latency, same in rows:
        print(f"{label:<32}{elapsed:>9.2f}{tokens / elapsed:>9.0f}{latency * 1000:>13.0f} ms"
              f"{t_alone / elapsed:>8.2f}x  {same}")
    (_, cont_s, cont_lat, _), (_, dyn_s, dyn_lat, _) = rows[1:]
    print(f"staggered arrivals, continuous vs dynamic batching: {dyn_s / cont_s:.2f}x the throughput, "
          f"median latency {cont_lat / dyn_lat:.2f}x")


if __name__ == "__main__":
    main()
