"""``GET /healthz`` (the process is alive) and ``GET /readyz`` (the model is loaded and warm).

Both are public (load balancers probe them), so they never show a filesystem path: a model
served from a directory is named by the directory's last component, and a load failure by its
code only (the details are in the server log).
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    service = getattr(request.app.state, "service", None)
    if service is None:
        error = getattr(request.app.state, "load_error", None)
        reason = "model loading"
        if error is not None:
            code = re.match(r"\[(\d+)\]", error)
            reason = f"the model could not be loaded (code {code.group(1) if code else 5000}); see the server log"
        return JSONResponse({"ready": False, "reason": reason, "privacy": request.app.state.settings.privacy.enabled},
                            status_code=503)
    health = await service.engine.health()
    lanes = {name: lane.status() for name, lane in service.scheduler.lanes.items()}
    # A main engine that is down (a pool with no replica reachable) still leaves the gateway useful
    # while a lane's fallback answers (degraded): it stays in the Service, saying so.
    fallback_only = not health.ready and await _a_fallback_ready(service)
    ready = (health.ready or fallback_only) and service.scheduler.accepting
    detail = {key: value for key, value in health.detail.items() if not _is_path(key, value)}
    if fallback_only:
        detail["fallback_only"] = True
    return JSONResponse({"ready": ready, "model": public_model_name(health.model), "lanes": lanes,
                         "privacy": service.settings.privacy.enabled, **detail},
                        status_code=200 if ready else 503)


def public_model_name(model: str) -> str:
    """A model's name without the directory it was loaded from (hub ids like ``Qwen/X`` stay)."""
    if model.startswith(("/", "~", ".")) or "\\" in model or model.count("/") > 1:
        return PurePath(model.replace("\\", "/")).name
    return model


def _is_path(key: str, value: Any) -> bool:
    return key in ("path", "checkpoint", "cache_dir") or (isinstance(value, str) and value.startswith(("/", "~")))


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics: lanes, admissions, latencies, tokens, jobs, engine batches."""
    metrics = request.app.state.metrics
    store = getattr(request.app.state, "jobs", None)
    if store is not None:
        for lane, by_status in (await store.counts()).items():
            for status, count in by_status.items():
                metrics.jobs.labels(lane, status).set(count)
    registry = metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _a_fallback_ready(service: Any) -> bool:
    fallbacks = {id(lane.fallback): lane.fallback for lane in service.scheduler.lanes.values()
                 if lane.fallback is not None}
    for engine in fallbacks.values():
        if (await engine.health()).ready:
            return True
    return False
