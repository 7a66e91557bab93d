"""``GET /healthz`` (the process is alive) and ``GET /readyz`` (the model is loaded and warm)."""

from __future__ import annotations

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
        return JSONResponse({"ready": False, "reason": error or "model loading"}, status_code=503)
    health = await service.engine.health()
    lanes = {name: lane.status() for name, lane in service.scheduler.lanes.items()}
    ready = health.ready and service.scheduler.accepting
    return JSONResponse({"ready": ready, "model": health.model, "lanes": lanes, **health.detail},
                        status_code=200 if ready else 503)


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
