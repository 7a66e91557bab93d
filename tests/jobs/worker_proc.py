"""A worker process for the crash tests: ``python worker_proc.py --backend sqlite --target FILE ...``.

Its handler appends ``<job id> <pid>`` to the executions file when it starts (one O_APPEND write,
so lines from several processes never interleave), sleeps a little and returns a result naming
the job and this process. SIGTERM stops it gracefully; the tests SIGKILL it to simulate a crash.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
from typing import Any

from vlserve.jobs import Job, RedisJobStore, SQLiteJobStore, Worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["sqlite", "redis"], required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--prefix", default="")
    parser.add_argument("--executions", required=True)
    parser.add_argument("--lane", default="default")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--sleep", type=float, nargs=2, default=(0.1, 0.3))
    parser.add_argument("--poll", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(serve(args))


async def serve(args: argparse.Namespace) -> None:
    store: SQLiteJobStore | RedisJobStore
    if args.backend == "sqlite":
        store = SQLiteJobStore(args.target)
    else:
        store = RedisJobStore(args.target, prefix=args.prefix)
    low, high = args.sleep

    async def handler(job: Job) -> dict[str, Any]:
        fd = os.open(args.executions, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{job.id} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
        await asyncio.sleep(random.uniform(low, high))
        return {"job_id": job.id, "pid": os.getpid(), "request": job.request}

    worker = Worker(
        store,
        handler,
        lanes=[args.lane],
        concurrency=args.concurrency,
        lease_seconds=args.lease,
        poll_interval=args.poll,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(worker.stop()))
    await store.counts()  # the store is reachable (and the SQLite schema exists) before "ready"
    print("ready", flush=True)
    try:
        await worker.run()
    finally:
        await store.aclose()


if __name__ == "__main__":
    main()
