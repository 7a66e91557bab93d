"""Gateway overhead: requests/s through HTTP vs calling the engine in-process on the same requests.

    python bench/gateway.py [--n 96] [--rounds 5] [--concurrency 8] [--max-tokens 16]

Both sides run the same prompts on the same model with the same batching and concurrency: the
in-process side calls a BatchingEngine in this process; the HTTP side calls ``vlserve serve`` in
its own process, adding JSON, base64 images, admission, the task layer and the response envelope. Target: HTTP
keeps ≥ 90 % of the in-process rate. The HTTP client (aiohttp, bodies encoded beforehand) shares
the machine with the server, so what it costs counts against HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from common import serve_process, vqa  # noqa: E402

from vlserve.api.app import load_engine  # noqa: E402
from vlserve.config import Settings  # noqa: E402
from vlserve.media import load_image  # noqa: E402
from vlserve.runtime.batching import BatchingEngine  # noqa: E402
from vlserve.runtime.protocol import GenerationRequest, SamplingParams  # noqa: E402
from vlserve.service.inference import vision_settings  # noqa: E402
from vlserve.tasks import TaskInput, get_task  # noqa: E402


async def bounded(jobs: list, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(job):  # type: ignore[no-untyped-def]
        async with gate:
            return await job()

    start = time.perf_counter()
    await asyncio.gather(*(one(j) for j in jobs))
    return time.perf_counter() - start


async def over_http(url: str, bodies: list[dict], concurrency: int) -> float:
    encoded = [json.dumps(b).encode() for b in bodies]  # the client's own JSON work is not the server's
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(600)) as session:
        async def post(body: bytes) -> None:
            async with session.post(url + "/infer", data=body, headers={"content-type": "application/json"}) as r:
                assert r.status == 200, await r.text()
                await r.read()

        return await bounded([lambda b=b: post(b) for b in encoded], concurrency)


async def in_process(engine: BatchingEngine, settings: Settings, bodies: list[dict], concurrency: int) -> float:
    task = get_task("vqa")
    vision = vision_settings(settings)

    async def run(body: dict) -> None:
        # The same work the service does below HTTP: decode the image, build the task prompt, generate.
        # (image decoding off the event loop, in a worker thread, as the service does it)
        image = await asyncio.to_thread(load_image, base64.b64decode(body["images"][0].split(",", 1)[1]), vision)
        inp = TaskInput(text=body["text"], images=[image])
        params = SamplingParams(**{**task.defaults, **body["options"]})
        await engine.generate(GenerationRequest(task.messages(inp), params))

    return await bounded([lambda b=b: run(b) for b in bodies], concurrency)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args()
    settings = Settings.model_validate({
        "model": args.model,
        "scheduling": {"lanes": {"interactive": {"concurrency": args.concurrency, "queue_size": args.n},
                                 "batch": {}, "video": {}}},
        "limits": {"max_pixels": 64 * 32 * 32},
    })
    engine = load_engine(settings, args.model, device="auto", dtype="auto", name=args.model)
    bodies = [vqa(i, args.max_tokens) for i in range(args.n)]
    direct = BatchingEngine(engine, max_batch=args.concurrency, window_ms=settings.scheduling.batch_window_ms)
    with serve_process(settings) as url:
        asyncio.run(over_http(url, bodies[:4], 4))  # warm-up
        asyncio.run(in_process(direct, settings, bodies[:4], 4))
        http_s, direct_s = [], []
        for _ in range(args.rounds):  # interleaved, so both sides see the same machine load
            direct_s.append(asyncio.run(in_process(direct, settings, bodies, args.concurrency)))
            http_s.append(asyncio.run(over_http(url, bodies, args.concurrency)))
    rate_http, rate_direct = args.n / statistics.median(http_s), args.n / statistics.median(direct_s)
    print(f"{args.n} vqa requests, {args.concurrency} concurrent, {args.max_tokens} tokens, model {args.model}")
    print(f"in-process engine: {rate_direct:.2f} req/s (median of {args.rounds}: "
          f"{', '.join(f'{args.n / t:.1f}' for t in direct_s)})")
    print(f"through HTTP:      {rate_http:.2f} req/s (median of {args.rounds}: "
          f"{', '.join(f'{args.n / t:.1f}' for t in http_s)})")
    print(f"HTTP keeps {100 * rate_http / rate_direct:.1f} % of the in-process rate (target >= 90 %)")


if __name__ == "__main__":
    main()
