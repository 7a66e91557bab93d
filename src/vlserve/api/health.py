"""``GET /healthz`` (the process is alive) and ``GET /readyz`` (the model is loaded and warm)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

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
    return JSONResponse({"ready": health.ready, "model": health.model, **health.detail},
                        status_code=200 if health.ready else 503)
