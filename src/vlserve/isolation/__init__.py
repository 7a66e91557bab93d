"""Run parsers of untrusted bytes in worker processes with hard CPU, memory and time limits.

    WorkerPool(name, workers, WorkerLimits(...))   processes started lazily, one job each at a time
    ├── submit / run / arun(fn, *args)              fn runs in a worker; VlserveErrors come back as is
    └── WorkerTimeout / WorkerOutOfMemory / WorkerCrashed   the job hit a limit or killed its worker
    configure(limits) / document_pool() / video_pool() / image_pool()   the server's pools (config.Limits)

See docs/inputs.md ("Isolation") for what runs where and why.
"""

from vlserve.isolation.pool import (
    IsolationError,
    WorkerAbandoned,
    WorkerCrashed,
    WorkerLimits,
    WorkerOutOfMemory,
    WorkerPool,
    WorkerTimeout,
)
from vlserve.isolation.pools import configure, document_pool, image_pool, video_pool

__all__ = [
    "IsolationError",
    "WorkerAbandoned",
    "WorkerCrashed",
    "WorkerLimits",
    "WorkerOutOfMemory",
    "WorkerPool",
    "WorkerTimeout",
    "configure",
    "document_pool",
    "image_pool",
    "video_pool",
]
