"""Hostile load: normal requests with and without a flood of hostile ones, side by side.

    python bench/hostile.py [--normal 40] [--concurrency 4] [--flood-workers 4] [--rounds 4]

Two ``vlserve serve --model tiny`` processes with the default limits run side by side, each
with two API keys, ``normal`` and ``flood`` (different clients, as an attacker and the users it
would hurt are):

- **clean**: ``--normal`` ordinary vqa requests (a small image, 16 greedy tokens) of the
  ``normal`` key, ``--concurrency`` at a time;
- **hostile**: the same normal requests while ``--flood-workers`` threads of the ``flood`` key
  replay the whole hostile corpus (:mod:`vlserve.testing.hostile`: sampling values, header bombs,
  float TIFFs, huge PDF pages, schema bombs, FFmpeg and PDFium abuse, oversized text, broken
  Unicode and JSON) until the normal requests are done.

The two runs alternate in ``--rounds`` phases (clean, hostile, clean, ...), so a machine whose
load drifts (other work on it) weighs on both alike; each phase waits for the flood's last
answer before the next starts.

Printed: normal-request p50/p99 latency and their ratio hostile/clean, 5xx answers, normal requests
that failed or whose greedy answer differs from the clean run's (co-batched failures), hostile
answers outside their documented ones, and the peak RSS of each server process (VmHWM) and of the
server with its isolated workers. Goals: 0 x 5xx, 0 co-batched failures, p99 within 2x of clean,
server peak RSS under 2 GiB.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import own_peak_rss, peak_rss, percentile, served  # noqa: E402

from vlserve.config import Settings  # noqa: E402
from vlserve.service.auth import hash_key  # noqa: E402
from vlserve.testing.hostile import CASES, data_uri, encode, run_case, small_png  # noqa: E402

KEYS = {"normal": "bench-normal-key", "flood": "bench-flood-key"}


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    answers: dict[int, Any] = field(default_factory=dict)
    normal_failures: int = 0
    server_errors: int = 0
    hostile_sent: int = 0
    off_contract: list[str] = field(default_factory=list)
    rss_server: int = 0
    rss_total: int = 0


def normal_body(i: int) -> dict[str, Any]:
    return {"task": "vqa", "text": f"Describe picture {i % 8}.", "images": [data_uri(small_png(i % 8, 48))],
            "options": {"max_tokens": 16, "temperature": 0}}


def settings() -> Settings:
    # A generous rate for both keys: the bench measures the server's fairness, not the rate limiter.
    return Settings.model_validate({"model": "tiny", "auth": {"keys": [
        {"id": name, "sha256": hash_key(key), "rate_per_minute": 1_000_000} for name, key in KEYS.items()]}})


def client_for(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=64),
                        headers={"authorization": f"Bearer {KEYS[key]}"})


def phase(url: str, out: Run, numbers: range, args: argparse.Namespace, *, hostile: bool,
          bodies: dict[str, bytes]) -> None:
    """``numbers`` normal requests against ``url``; with ``hostile``, the flood runs meanwhile."""
    normal_client, flood_client = client_for(url, "normal"), client_for(url, "flood")
    done = threading.Event()
    lock = threading.Lock()

    def normal(i: int) -> None:
        start = time.perf_counter()
        response = normal_client.post("/infer", json=normal_body(i))
        elapsed = time.perf_counter() - start
        with lock:
            out.latencies.append(elapsed)
            out.server_errors += response.status_code >= 500
            if response.status_code != 200 or response.json().get("code") != 0:
                out.normal_failures += 1
            else:
                out.answers[i] = response.json()["result"]["answer"]

    def flood(worker: int) -> None:
        n = worker + numbers.start  # each phase goes on through the corpus where the last one stopped
        while not done.is_set():
            case = CASES[n % len(CASES)]
            n += args.flood_workers
            status, code = run_case(flood_client, case, content=bodies[case.name])
            with lock:
                out.hostile_sent += 1
                out.server_errors += status >= 500
                if (status, code) not in case.allowed:
                    out.off_contract.append(f"{case.name}: {status}/{code}")

    flooders = [threading.Thread(target=flood, args=(w,)) for w in range(args.flood_workers)] if hostile else []
    for t in flooders:
        t.start()
    if hostile:
        time.sleep(1.0)  # the flood is under way before the first normal request
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(normal, numbers))
    done.set()
    for t in flooders:
        t.join()
    normal_client.close()
    flood_client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # A p99 needs about 100 samples per phase to be more than the single slowest request.
    parser.add_argument("--normal", type=int, default=120, help="normal requests per phase (clean, hostile)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--flood-workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4, help="clean/hostile phases alternate this many times")
    args = parser.parse_args()
    bodies = {case.name: encode(case) for case in CASES}  # built once: the client's CPU is the server's too
    clean, attacked = Run(), Run()
    with ExitStack() as stack:
        (clean_url, clean_proc), (hostile_url, hostile_proc) = (
            stack.enter_context(served(settings())) for _ in range(2))
        for url in (clean_url, hostile_url):  # warm-up
            with client_for(url, "normal") as client:
                for i in range(2):
                    client.post("/infer", json=normal_body(i))
        per_round = -(-args.normal // args.rounds)
        for start in range(0, args.normal, per_round):
            numbers = range(start, min(args.normal, start + per_round))
            phase(clean_url, clean, numbers, args, hostile=False, bodies=bodies)
            phase(hostile_url, attacked, numbers, args, hostile=True, bodies=bodies)
        for run, proc in ((clean, clean_proc), (attacked, hostile_proc)):
            run.rss_server, run.rss_total = own_peak_rss(proc.pid), peak_rss(proc.pid)
    differing = sum(1 for i, a in attacked.answers.items() if i in clean.answers and clean.answers[i] != a)
    mib = 1 << 20

    def row(name: str, a: object, b: object, note: str = "") -> None:
        print(f"{name:<36}{a!s:>14}{b!s:>14}  {note}")

    print(f"{'':<36}{'clean':>14}{'hostile':>14}  ({args.flood_workers} flood threads, {args.rounds} rounds)")
    p50c, p99c = percentile(clean.latencies, 50) * 1000, percentile(clean.latencies, 99) * 1000
    p50h, p99h = percentile(attacked.latencies, 50) * 1000, percentile(attacked.latencies, 99) * 1000
    row("normal requests", len(clean.latencies), len(attacked.latencies))
    row("hostile requests sent", 0, attacked.hostile_sent, f"({len(CASES)} cases)")
    row("normal p50 (ms)", f"{p50c:.0f}", f"{p50h:.0f}", f"ratio {p50h / p50c:.2f}x")
    row("normal p99 (ms)", f"{p99c:.0f}", f"{p99h:.0f}", f"ratio {p99h / p99c:.2f}x (goal <= 2x)")
    row("5xx answers", clean.server_errors, attacked.server_errors, "(goal 0)")
    row("co-batched failures", clean.normal_failures, attacked.normal_failures + differing,
        "(normal requests failed or answered differently; goal 0)")
    row("hostile answers off contract", "-", len(attacked.off_contract))
    row("peak RSS, server (MiB)", f"{clean.rss_server / mib:.0f}", f"{attacked.rss_server / mib:.0f}",
        "(goal < 2048)")
    row("peak RSS, server + workers (MiB)", f"{clean.rss_total / mib:.0f}", f"{attacked.rss_total / mib:.0f}")
    for line in attacked.off_contract[:10]:
        print("  off contract:", line)


if __name__ == "__main__":
    main()
