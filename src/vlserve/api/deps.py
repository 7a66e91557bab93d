"""FastAPI dependencies: the caller's key id and the service objects held by the app."""

from __future__ import annotations

from fastapi import Request

from vlserve.errors import OverloadedError
from vlserve.scheduling.fairness import client_id, set_client
from vlserve.service.inference import InferenceService


async def caller(request: Request) -> str | None:
    """Authenticate the request (no-op when no keys are configured); returns the key id."""
    client = request.client.host if request.client else None
    key_id: str | None = await request.app.state.keyring.authenticate(request.headers.get("authorization"), client)
    set_client(client_id(key_id, client))  # whose share of lanes and budgets this request uses
    return key_id


async def service_of(request: Request) -> InferenceService:
    # async: FastAPI runs a plain-def dependency on its thread pool, a hop on every request.
    service = getattr(request.app.state, "service", None)
    if service is None:
        raise OverloadedError("the model is still loading; retry shortly", retry_after=5)
    return service
