"""Gateway scaling: requests/s and latency with one gateway replica versus two, same upstream, same
load, same run.

    python bench/gateway_scaling.py [--n 200] [--rounds 4] [--concurrency 16] [--upstream-ms 0]
                                    [--no-redis]

Two `vlserve serve` gateways (processes, no model: `main` is a pool of the upstream) start once; a
round sends the same `/infer` vqa requests (64 px PNGs) either all to gateway A, or to A and B in
turn (client-side round-robin, as a load balancer would). Rounds alternate one / two, in turns
going first, so that both see the same machine load; both gateways are warmed at full load first.
The upstream is a minimal OpenAI-compatible **stand-in** process that streams a short answer at
once (``--upstream-ms`` adds a fixed per-answer delay), so the gateways are
the bottleneck, which is what this measures; in production the upstream is vLLM on a GPU.

With redis-server installed (and not ``--no-redis``) the gateways run as deployed with several
replicas: API keys with per-key rate limits shared through Redis (one Lua call per request), jobs
in Redis. Each gateway's work is CPU-bound Python, so two replicas can only help when there are
free cores for them: on a 2-core machine shared with the client and the upstream expect a ratio
near 1 (the number printed is what was measured, nothing else). On a machine busy with other work
the ratio can even exceed 2: two gateway processes get a larger share of the CPU than one, which
says nothing about the gateway; rerun on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import percentile, vqa  # noqa: E402

KEY = "vls-bench-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the upstream stand-in (runs as its own process: `gateway_scaling.py --stub PORT MS`) -----------
def run_stub(port: int, delay_ms: float) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    words = [" a", " small", " answer"]

    async def chat(request: Request) -> Response:
        asked = json.loads(await request.body())
        usage = {"prompt_tokens": 80, "completion_tokens": len(words), "total_tokens": 80 + len(words)}
        if asked.get("stream") is not True:  # one JSON answer, as vLLM sends without streaming
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            return JSONResponse({"object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(words)}, "finish_reason": "stop"}]})

        async def events() -> Any:
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            for word in words:
                yield ("data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": word},
                                                           "finish_reason": None}]}) + "\n\n").encode()
            yield ("data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                   + "\n\n").encode()
            yield ("data: " + json.dumps({"choices": [], "usage": usage}) + "\n\n").encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse("vllm:num_requests_waiting 0.0\n")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health),
                            Route("/metrics", metrics)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- processes ------------------------------------------------------------------------------------------
@contextmanager
def process(args: list[str], ready_url: str, log: Path,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the process
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args} did not become ready:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def redis_server(tmp: Path) -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def gateway_settings(tmp: Path, name: str, upstream: str, redis_url: str | None, concurrency: int,
                     n: int) -> dict[str, Any]:
    from vlserve.service.auth import hash_key

    data: dict[str, Any] = {
        "host": "127.0.0.1", "model_name": "stub", "expose_ui": False, "data_dir": str(tmp / name),
        "remote": {"upstreams": [upstream], "upstream_model": "stub", "dialect": "vllm", "confidence": False,
                   "max_concurrency": concurrency * 4},
        "scheduling": {"lanes": {"interactive": {"concurrency": concurrency, "queue_size": n}}},
        "jobs": {"workers": 0},
        "retention": {"purge_interval": 0},
    }
    if redis_url is not None:
        data["jobs"] = {"workers": 0, "backend": "redis", "redis_url": redis_url}
        data["auth"] = {"keys": [{"id": "bench", "sha256": hash_key(KEY), "rate_per_minute": 10_000_000}],
                        "rate_limit_backend": "redis"}
    return data


# -- load -----------------------------------------------------------------------------------------------
async def load(urls: list[str], bodies: list[bytes], concurrency: int, auth: bool) -> tuple[float, list[float]]:
    """Seconds for all ``bodies`` at ``concurrency``, sent to ``urls`` in turn, and each latency."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {KEY}"} if auth else {})}
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(600)) as session:
        async def one(i: int, body: bytes) -> None:
            async with gate:
                started = time.perf_counter()
                async with session.post(urls[i % len(urls)] + "/infer", data=body, headers=headers) as response:
                    text = await response.read()
                    assert response.status == 200, text[:300]
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        return time.perf_counter() - started, latencies


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--stub":
        run_stub(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="requests per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--upstream-ms", type=float, default=0.0, help="the stand-in's delay per answer")
    parser.add_argument("--no-redis", action="store_true", help="no keys, no Redis (even if installed)")
    args = parser.parse_args()
    bodies = [json.dumps(vqa(i, 8)).encode() for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        redis_url = None if args.no_redis else stack.enter_context(redis_server(tmp))
        stub_port = free_port()
        stub = f"http://127.0.0.1:{stub_port}"
        stack.enter_context(process([sys.executable, __file__, "--stub", str(stub_port), str(args.upstream_ms)],
                                    stub + "/health", tmp / "stub.log"))
        # The gateways read their settings from their files only.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLSERVE_")}
        gateways = []
        for name in ("a", "b"):
            port = free_port()
            config = tmp / f"{name}.json"
            config.write_text(json.dumps(gateway_settings(tmp, name, stub, redis_url, args.concurrency, args.n)))
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(process([sys.executable, "-m", "vlserve.cli.main", "serve", "--config", str(config),
                                         "--port", str(port), "--log-level", "warning"], url + "/readyz",
                                        tmp / f"gateway-{name}.log", env))
            gateways.append(url)
        auth = redis_url is not None
        results: dict[str, list[tuple[float, list[float]]]] = {"1 gateway": [], "2 gateways": []}
        try:
            for url in gateways:  # warm both at full load: connections, worker pools, first-request paths
                asyncio.run(load([url], bodies[:max(32, args.n // 4)], args.concurrency, auth))
            sides = {"1 gateway": gateways[:1], "2 gateways": gateways}
            for round_ in range(args.rounds):  # the order alternates too: neither side always goes first
                for side in sorted(sides, reverse=round_ % 2 == 1):
                    results[side].append(asyncio.run(load(sides[side], bodies, args.concurrency, auth)))
        except Exception:
            for log in sorted(tmp.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
    print(f"{args.n} vqa requests x {args.rounds} rounds, concurrency {args.concurrency}, 64 px PNGs; upstream: "
          f"a stand-in answering in {args.upstream_ms:g} ms; "
          + ("keys with rate limits shared through Redis, jobs in Redis" if redis_url else "no keys, no Redis")
          + f"; {os.cpu_count()} CPU cores")
    summary = {}
    for side, runs in results.items():
        rates = [args.n / seconds for seconds, _ in runs]
        latencies = [x for _, lat in runs for x in lat]
        summary[side] = (statistics.median(rates), percentile(latencies, 50), percentile(latencies, 99))
        rate, p50, p99 = summary[side]
        print(f"  {side:10s} {rate:7.1f} req/s (rounds: {', '.join(f'{r:.1f}' for r in rates)})  "
              f"p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms")
    (r1, p50a, p99a), (r2, p50b, p99b) = summary["1 gateway"], summary["2 gateways"]
    print(f"2 gateways / 1 gateway throughput: {r2 / r1:.2f}x (ideal 2.00x with a free core per gateway); "
          f"p50 {p50b / p50a:.2f}x, p99 {p99b / p99a:.2f}x")


if __name__ == "__main__":
    main()
