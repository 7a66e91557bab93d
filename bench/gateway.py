"""Gateway overhead: requests/s through HTTP vs calling the engine in-process on the same requests.

    python bench/gateway.py [--n 48] [--concurrency 8] [--max-tokens 16]

Both sides run the same prompts on the same model with the same batching and concurrency: the
in-process side calls a BatchingEngine in this process; the HTTP side calls ``vlserve serve`` in
its own process, adding JSON, base64 images, admission, the task layer and the response envelope. Target: HTTP
keeps ≥ 90 % of the in-process rate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from pathlib import Path

import httpx

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
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def post(body: dict) -> None:
            response = await client.post(url + "/infer", json=body)
            assert response.status_code == 200, response.text

        return await bounded([lambda b=b: post(b) for b in bodies], concurrency)


async def in_process(engine: BatchingEngine, settings: Settings, bodies: list[dict], concurrency: int) -> float:
    task = get_task("vqa")
    vision = vision_settings(settings)

    async def run(body: dict) -> None:
        # The same work the service does below HTTP: decode the image, build the task prompt, generate.
        image = load_image(base64.b64decode(body["images"][0].split(",", 1)[1]), vision)
        inp = TaskInput(text=body["text"], images=[image])
        params = SamplingParams(**{**task.defaults, **body["options"]})
        await engine.generate(GenerationRequest(task.messages(inp), params))

    return await bounded([lambda b=b: run(b) for b in bodies], concurrency)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=48)
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
        for _ in range(2):  # interleaved, so both sides see the same machine load
            direct_s.append(asyncio.run(in_process(direct, settings, bodies, args.concurrency)))
            http_s.append(asyncio.run(over_http(url, bodies, args.concurrency)))
    rate_http, rate_direct = args.n / min(http_s), args.n / min(direct_s)
    print(f"{args.n} vqa requests, {args.concurrency} concurrent, {args.max_tokens} tokens, model {args.model}")
    print(f"in-process engine: {rate_direct:.2f} req/s")
    print(f"through HTTP:      {rate_http:.2f} req/s")
    print(f"HTTP keeps {100 * rate_http / rate_direct:.1f} % of the in-process rate (target >= 90 %)")


if __name__ == "__main__":
    main()
