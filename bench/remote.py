"""Gateway overhead: requests/s and latency through a vlserve gateway (RemoteEngine pool) versus
straight to its upstream, same load, same run; and the gateway's CPU per request.

    python bench/remote.py [--n 48] [--rounds 5] [--concurrency 8] [--max-tokens 8] [--step-ms 40]
                           [--rate-share 0.6] [--only gpu-paced|cpu-tiny]

The upstream is ``vlserve serve`` with the tiny model in its own process; the gateway is another
``vlserve serve`` whose ``main`` is a pool of that one upstream (``remote.upstreams``). The same
requests (vqa, one 64 px PNG each) go both ways: through the gateway as ``/infer`` bodies, and
straight to the upstream as the chat completions the gateway turns them into (built by the
gateway's own ``encode_request``: the task's prompt, the caller's PNG bytes, logprobs for
``confidence``), which is what a client of vLLM or SGLang would send them. So the upstream does the
same work on both paths, and the difference is the gateway's: a second HTTP hop, the task API,
admission and the media checks (docs/remote.md). Rounds alternate direct / gateway, so both sides
see the same machine load.

Three load shapes, each in pairs of rounds (direct then gateway, the next pair gateway first):

- ``burst``: ``4 x --n`` requests at once (the throughput test of vLLM's and SGLang's serving
  benchmarks at an unlimited request rate): both paths queue, and requests/s is the capacity.
  **Goal (issue 10): the gateway keeps >= 95 % of the upstream's throughput** (median over pairs).
- ``poisson``: ``2 x --n`` requests arriving independently (exponential gaps, seeded, the same
  send times on both paths) at ``--rate-share`` of the direct burst capacity: each request's
  latency with others in flight, as production traffic has it. **Goal: added p50 < 5 ms**
  (pooled over every round).
- ``closed``: ``--concurrency`` clients in lock-step, each sending its next request when its answer
  arrives. Not a goal: straight to the upstream, its batch ends all together, every client resends
  at once, and the next batch starts whole after the engine's short gather window; through the
  gateway, the resends reach the upstream a few milliseconds apart, and the stragglers join the
  running batch at its next step (up to one step later, 20 ms here). Independent clients never
  move in lock-step, so this shape measures a benchmark artefact more than the gateway; it is
  printed because an earlier version of this bench used it.

Two rows, each with its own upstream:

- ``gpu-paced`` (**the goal row**): the upstream's engine takes at least ``--step-ms`` per
  forward pass (``scheduling.min_step_ms``, a benchmark-only setting), the pace of a GPU
  deployment (a batch of 8 with images through Qwen3-VL-8B or 30B-A3B takes some 10-40 ms per
  step, prefill included), so the upstream is bound by its model's time as in production. The
  upstream (with the client) runs on the first half of the CPUs and the gateway on the rest, as
  on separate hosts. The tiny model still costs real CPU (a pass of 8 rows with images up to
  about 25 ms of one core here), so the default pace is 40 ms: at 20 ms its one CPU would be the
  bottleneck, which the *pace check* line reports (the upstream's CPU busy share on the direct
  rounds must stay below 75 %);
- ``cpu-tiny``: the tiny model at CPU speed, the worst case for the ratio: each request costs the
  upstream only a few tens of CPU milliseconds, and client, gateway and upstream share the same
  cores, so every millisecond of gateway CPU is taken from the upstream.

The upstream's lane runs ``--concurrency`` requests at once (its batch); the gateway's lane lets
twice as many through, as docs/remote.md advises ("Sizing a gateway's lanes").

``gateway CPU ms/req`` is the gateway process's CPU time (user + system, from /proc) over its
rounds divided by the requests it served: the machine-independent figure. ``upstream CPU ms/req``
is shown for both paths (its OpenAI path versus ``/infer``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from common import percentile, served, vqa  # noqa: E402

from vlserve.config import Settings, Upstream  # noqa: E402
from vlserve.media import VisionSettings  # noqa: E402
from vlserve.media.image import load_image  # noqa: E402
from vlserve.runtime.protocol import GenerationRequest, SamplingParams  # noqa: E402
from vlserve.runtime.remote import encode_request  # noqa: E402
from vlserve.tasks import get_task  # noqa: E402
from vlserve.tasks.base import TaskInput  # noqa: E402

Timings = tuple[float, list[float], list[float]]


async def load(url: str, bodies: list[bytes], concurrency: int) -> Timings:
    """Closed loop: ``concurrency`` clients, each sending its next body when its previous one is
    answered. Seconds for all ``bodies``, each request's latency and (:func:`_send`) its time in
    the gateway."""
    gate = asyncio.Semaphore(concurrency)
    return await _send(url, bodies, lambda i: gate, [0.0] * len(bodies), limit=concurrency)


async def load_open(url: str, bodies: list[bytes], offsets: list[float]) -> Timings:
    """Open loop: body ``i`` is sent ``offsets[i]`` seconds after the start, whatever is still in
    flight (all at 0: a burst). Seconds until the last answer, each request's latency and its time
    in the gateway."""
    return await _send(url, bodies, lambda i: contextlib.nullcontext(), offsets, limit=0)


async def _send(url: str, bodies: list[bytes], gate: Callable[[int], Any], offsets: list[float],
                *, limit: int) -> Timings:
    """... and, for answers of a gateway's ``/infer``, each request's time in the gateway: its
    latency less the gateway's own round trip to the upstream (``metadata.ttft_ms``: from sending
    the upstream request to its whole answer), as proxies such as Envoy or Kong report theirs."""
    latencies = [0.0] * len(bodies)  # in the order sent: request i of one path pairs with i of the other
    own: list[float] = []
    connector = aiohttp.TCPConnector(limit=limit)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(600)) as session:
        async def one(i: int, body: bytes) -> None:
            await asyncio.sleep(max(0.0, begun + offsets[i] - time.perf_counter()))
            async with gate(i):
                started = time.perf_counter()
                async with session.post(url, data=body,
                                        headers={"content-type": "application/json"}) as response:
                    text = await response.read()
                    assert response.status == 200, text[:300]
                latencies[i] = time.perf_counter() - started
                metadata = (json.loads(text).get("result") or {}).get("metadata") or {}
                if "ttft_ms" in metadata:
                    own.append(latencies[i] - metadata["ttft_ms"] / 1000)

        begun = time.perf_counter()
        await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
        return time.perf_counter() - begun, latencies, own


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    """One path's rounds: throughput per round, every latency, CPU seconds of each process."""

    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)  # per round
    p99s: list[float] = field(default_factory=list)  # per round
    offered: float = 0.0  # open-loop arrival rate, req/s
    latencies: list[float] = field(default_factory=list)
    own: list[float] = field(default_factory=list)  # time in the gateway, per request
    gateway_cpu: float = 0.0
    upstream_cpu: float = 0.0
    requests: int = 0
    seconds: float = 0.0

    def add(self, n: int, timings: Timings, gateway_cpu: float, upstream_cpu: float) -> None:
        seconds, latencies, own = timings
        self.own += own
        self.rates.append(n / seconds)
        self.p50s.append(percentile(latencies, 50))
        self.p99s.append(percentile(latencies, 99))
        self.latencies += latencies
        self.gateway_cpu += gateway_cpu
        self.upstream_cpu += upstream_cpu
        self.requests += n
        self.seconds += seconds

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


SHAPES = ("burst", "poisson", "closed")
#: The goal row counts as paced by its model (a GPU's pace) while its upstream's CPU is busy less than this.
PACED_BELOW = 0.75


@dataclass
class Bodies:
    """The same requests for both paths: ``/infer`` bodies for the gateway, and for the upstream the
    chat completions the gateway turns them into (what a client of vLLM would send it)."""

    infer: list[bytes]
    chat: list[bytes]


def chat_body(seed: int, max_tokens: int) -> bytes:
    """The chat-completions body a gateway sends its upstream for ``vqa(seed, max_tokens)``: the
    task's prompt and sampling defaults, the image as the caller's own PNG bytes, logprobs for
    ``confidence``; built by the gateway's own code (``encode_request``)."""
    request = vqa(seed, max_tokens)
    image = load_image(base64.b64decode(request["images"][0].partition(",")[2]), VisionSettings())
    task = get_task("vqa")
    params = SamplingParams(**{**task.defaults, "max_tokens": max_tokens})
    generation = GenerationRequest(task.messages(TaskInput(text=request["text"], images=[image])), params,
                                   incremental=False)
    options = Upstream(upstreams=["http://127.0.0.1:1"], dialect="vlserve")
    return asyncio.run(encode_request(generation, options, VisionSettings())).wire("tiny")


def placement(split: bool) -> tuple[set[int] | None, set[int] | None]:
    """The CPUs of the upstream (and of this client) and of the gateway: with ``split``, the first
    half for the upstream and the rest for the gateway, as on separate hosts; else shared (None).
    The client runs beside the upstream, whose pace leaves it CPU to spare (the pace check says
    so), rather than taking the gateway's CPU on one path and not on the other."""
    cpus = sorted(os.sched_getaffinity(0))
    if not split or len(cpus) < 2:
        return None, None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def measure(args: argparse.Namespace, bodies: Bodies, step_ms: float) -> dict[str, dict[str, Side]]:
    """For each load shape, alternating direct / gateway rounds against one upstream and gateway."""
    upstream_cpus, gateway_cpus = placement(split=bool(step_ms) and not args.shared)
    everything = os.sched_getaffinity(0)
    if upstream_cpus is not None:
        os.sched_setaffinity(0, upstream_cpus)  # this client's thread
    try:
        return _measure(args, bodies, step_ms, upstream_cpus, gateway_cpus)
    finally:
        os.sched_setaffinity(0, everything)


def _measure(args: argparse.Namespace, bodies: Bodies, step_ms: float, upstream_cpus: set[int] | None,
             gateway_cpus: set[int] | None) -> dict[str, dict[str, Side]]:
    # One client is the whole load here: its share of a lane is all of it; the queues hold a burst.
    upstream_lanes = {"interactive": {"concurrency": args.concurrency, "queue_size": 8 * args.n,
                                      "max_client_share": 1.0, "queue_timeout": 600}}
    # A gateway lets more requests through than the upstream batches, so that the upstream's own
    # queue refills a finished row at once (docs/remote.md, "Sizing a gateway's lanes").
    gateway_lanes = {"interactive": {"concurrency": 2 * args.concurrency, "queue_size": 8 * args.n,
                                     "max_client_share": 1.0, "queue_timeout": 600}}
    upstream = Settings.model_validate({"model": "tiny", "expose_ui": False, "jobs": {"workers": 0},
                                        "scheduling": {"lanes": upstream_lanes, "min_step_ms": step_ms}})
    results = {shape: {"direct": Side(), "gateway": Side()} for shape in SHAPES}
    with served(upstream, cpus=upstream_cpus) as (up, up_proc):
        gateway = Settings.model_validate({
            # The gateway refuses nothing the upstream would queue (its own queue is 8 x n deep).
            "remote": {"upstreams": [up], "dialect": "vlserve", "max_concurrency": 2 * args.concurrency,
                       "max_queue": 8 * args.n},
            "model_name": "tiny", "expose_ui": False, "jobs": {"workers": 0},
            "scheduling": {"lanes": gateway_lanes}})
        with served(gateway, cpus=gateway_cpus) as (gw, gw_proc):
            targets = {"direct": (up + "/v1/chat/completions", bodies.chat), "gateway": (gw + "/infer", bodies.infer)}
            for url, sent in targets.values():  # warm both: connections, first-request paths, a full queue
                asyncio.run(load(url, sent[:8], 4))
                asyncio.run(load_open(url, sent, [0.0] * len(sent)))
            n = len(bodies.infer)

            def run(shape: str, pair: int, make: Callable[[str, list[bytes]], Any], n: int = n) -> None:
                order = ("direct", "gateway")
                for name in order if pair % 2 == 0 else order[::-1]:
                    g0, u0 = cpu_seconds(gw_proc.pid), cpu_seconds(up_proc.pid)
                    timings = asyncio.run(make(*targets[name]))
                    g1, u1 = cpu_seconds(gw_proc.pid), cpu_seconds(up_proc.pid)
                    results[shape][name].add(n, timings, g1 - g0, u1 - u0)

            for pair in range(args.rounds):  # four times the requests: the steady state, not the edges
                run("burst", pair, lambda url, sent: load_open(url, sent * 4, [0.0] * 4 * n), 4 * n)
            rate = args.rate_share * results["burst"]["direct"].rate
            for pair in range(args.rounds):  # twice the requests: latencies want more samples
                offsets = poisson(2 * n, rate, seed=pair)
                run("poisson", pair, lambda url, sent, offsets=offsets: load_open(url, sent + sent, offsets), 2 * n)
            for pair in range(args.rounds):
                run("closed", pair, lambda url, sent: load(url, sent, args.concurrency))
            results["poisson"]["direct"].offered = results["poisson"]["gateway"].offered = rate
    return results


def poisson(n: int, rate: float, *, seed: int) -> list[float]:
    """Send times of ``n`` requests arriving at ``rate`` per second on average, independently."""
    rng, now, out = random.Random(seed), 0.0, []
    for _ in range(n):
        out.append(now)
        now += rng.expovariate(rate)
    return out


def report(label: str, shapes: dict[str, dict[str, Side]], args: argparse.Namespace, goal: bool,
           upstream_cores: int) -> None:
    print(f"{label}{'   <- goal row' if goal else ''}")
    verdicts = []
    for shape, sides in shapes.items():
        direct, gateway = sides["direct"], sides["gateway"]
        ratios = [g / d for g, d in zip(gateway.rates, direct.rates, strict=True)]
        added_p50s = [g - d for g, d in zip(gateway.p50s, direct.p50s, strict=True)]
        ratio, added = statistics.median(ratios) * 100, statistics.median(added_p50s) * 1000
        pooled = (f"pooled: {gateway.rate / direct.rate * 100:.1f} %, p50 {(gateway.p(50) - direct.p(50)) * 1000:+.1f} "
                  f"ms, p99 {(gateway.p(99) - direct.p(99)) * 1000:+.1f} ms")
        if shape == "burst":
            print(f"  burst: {4 * args.n} requests at once (capacity; the goal's throughput)")
            verdicts.append(ratio >= 95)
            line = f"gateway / direct throughput {ratio:5.1f} % (goal >= 95 %)"
        elif shape == "poisson":
            print(f"  poisson: {2 * args.n} independent arrivals at {direct.offered:.1f} req/s "
                  f"({args.rate_share * 100:.0f} % of the direct capacity above), the same arrival times on both "
                  "paths (the goal's latency)")
            # End to end, each latency also depends on where its arrival falls in the upstream's step
            # and on how many steps its answer takes: the p50s of two runs of the same path differ by
            # several ms. The goal reads each request's own time in the gateway instead.
            added = (gateway.p(50) - direct.p(50)) * 1000
            paired = statistics.median(g - d for g, d in zip(gateway.latencies, direct.latencies, strict=True)) * 1000
            own50, own99 = (percentile(gateway.own, q) * 1000 for q in (50, 99))
            verdicts.append(own50 < 5)
            p90, p99 = ((gateway.p(q) - direct.p(q)) * 1000 for q in (90, 99))
            line = (f"time in the gateway p50 {own50:.1f} ms (goal < 5 ms), p99 {own99:.1f} ms; end to end: "
                    f"p50 {added:+.1f} ms, p90 {p90:+.1f} ms, p99 {p99:+.1f} ms, median of per-request "
                    f"differences {paired:+.1f} ms")
        else:
            print(f"  closed: {args.concurrency} clients in lock-step, each sending when its answer arrives "
                  "(not a goal: see docs/remote.md)")
            line = (f"gateway / direct throughput {ratio:5.1f} %, added p50 {added:+.1f} ms; time in the gateway "
                    f"p50 {percentile(gateway.own, 50) * 1000:.1f} ms")
        for name, side in sides.items():
            print(f"    {name:8s} {side.rate:6.2f} req/s (rounds: {', '.join(f'{r:.2f}' for r in side.rates)})  "
                  f"p50 {side.p(50) * 1000:7.1f} ms  p99 {side.p(99) * 1000:7.1f} ms  "
                  f"upstream CPU {side.upstream_cpu / side.requests * 1000:5.1f} ms/req")
        print(f"    {line}   [medians over {len(ratios)} pairs; {pooled}]")
    gateway_cpu = sum(sides["gateway"].gateway_cpu for sides in shapes.values())
    served = sum(sides["gateway"].requests for sides in shapes.values())
    print(f"  gateway CPU {gateway_cpu / served * 1000:.1f} ms/req")
    if goal:
        print(f"  goal (throughput >= 95 % at capacity, added p50 < 5 ms per request at independent arrivals): "
              f"{'met' if all(verdicts) else 'NOT met'}")
    if goal:
        # The row stands for a GPU deployment only while the upstream's own CPU is not its limit.
        busy = {shape: sides["direct"].upstream_cpu / sides["direct"].seconds / upstream_cores
                for shape, sides in shapes.items() if shape != "closed"}
        paced = all(share < PACED_BELOW for share in busy.values())
        print("  pace check: the upstream's CPU was busy " +
              ", ".join(f"{share * 100:.0f} % ({shape})" for shape, share in busy.items()) +
              f" of its {upstream_cores} CPU{'s' if upstream_cores > 1 else ''} on the direct rounds: " +
              (f"paced by the model, as on a GPU (< {PACED_BELOW * 100:.0f} %)" if paced else
               f"NOT paced (>= {PACED_BELOW * 100:.0f} %): the upstream's CPU is the bottleneck, so this row "
               "measures the machine; rerun with a larger --step-ms or on a quieter machine"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8, help="the upstream's lane (its batch) and the "
                                                                   "closed loop's clients")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--step-ms", type=float, default=40.0, help="the gpu-paced row's minimum forward pass")
    parser.add_argument("--rate-share", type=float, default=0.6,
                        help="poisson arrivals at this share of the direct capacity (burst)")
    parser.add_argument("--only", choices=["gpu-paced", "cpu-tiny"], help="run one row")
    parser.add_argument("--shared", action="store_true",
                        help="gpu-paced row: the upstream shares every CPU with the gateway and the client")
    args = parser.parse_args()
    bodies = Bodies([json.dumps(vqa(i, args.max_tokens)).encode() for i in range(args.n)],
                    [chat_body(i, args.max_tokens) for i in range(args.n)])
    rows = [("gpu-paced", args.step_ms), ("cpu-tiny", 0.0)]
    results = {name: measure(args, bodies, step) for name, step in rows if args.only in (None, name)}
    load1, load5, _ = os.getloadavg()
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average "
          f"{load1:.1f} / {load5:.1f} (1 / 5 min)")
    print(f"{args.n} vqa requests x {args.rounds} rounds per side and shape, upstream lane {args.concurrency} "
          f"(gateway lane {2 * args.concurrency}), max_tokens {args.max_tokens}, tiny model, 64 px PNG images")
    for name, step in rows:
        if name in results:
            upstream_cpus, gateway_cpus = placement(split=not args.shared)
            where = ("sharing every CPU with the gateway and the client" if upstream_cpus is None else
                     f"on CPUs {sorted(upstream_cpus)} with the client, the gateway on {sorted(gateway_cpus or [])}")
            label = (f"gpu-paced: upstream forward passes >= {step:g} ms (scheduling.min_step_ms), {where}"
                     if step else "cpu-tiny: upstream at CPU speed, sharing the cores (worst case)")
            cores = len(upstream_cpus) if upstream_cpus else (os.cpu_count() or 1)
            report(label, results[name], args, goal=bool(step), upstream_cores=cores)


if __name__ == "__main__":
    main()
