"""The ASGI application: ``create_app(settings)``.

The engine is loaded in the background at startup (``/readyz`` answers 503 until it is warm) or
injected ready-made (tests, embedding).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vlserve import __version__
from vlserve.api import errors, health, infer, openai_compat
from vlserve.api.middleware import RequestContext
from vlserve.config import Settings
from vlserve.runtime.protocol import Engine, GenerationRequest, Message, SamplingParams
from vlserve.service.auth import KeyRing
from vlserve.service.inference import InferenceService, media_limits

log = logging.getLogger("vlserve")


def build_engine(settings: Settings) -> Engine:
    """The embedded engine for ``settings.model``, warmed up with one short generation."""
    from vlserve.media import VisionSettings
    from vlserve.runtime.loading import resolve_checkpoint
    from vlserve.runtime.local import LocalEngine

    ckpt = resolve_checkpoint(settings.model)
    vision = VisionSettings.from_checkpoint(ckpt.path, **media_limits(settings))
    engine = LocalEngine(ckpt.path, device=settings.device, dtype=settings.dtype, vision=vision,
                         name=settings.model_name or settings.model)
    engine.generate_sync(GenerationRequest([Message("user", "warm up")], SamplingParams(max_tokens=1)))
    engine.grammar  # noqa: B018 - build the grammar tables now, not on the first structured request
    return engine


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = None
        if engine is not None:
            app.state.service = InferenceService(settings, engine)
        else:
            loader = asyncio.create_task(_load(app, settings))
        yield
        if loader is not None:
            loader.cancel()
        service = getattr(app.state, "service", None)
        if service is not None:
            await service.aclose()

    app = FastAPI(
        title="vlserve",
        version=__version__,
        summary="Task API over Qwen3-VL: /infer, /infer_stream, OpenAI-compatible chat.",
        lifespan=lifespan,
        docs_url="/docs" if settings.expose_docs else None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.service = None
    app.state.keyring = KeyRing(settings.auth.keys, settings.auth.default_rate_per_minute)
    errors.install(app)
    app.add_middleware(RequestContext, max_body_bytes=settings.limits.max_body_bytes)
    app.include_router(infer.router)
    app.include_router(openai_compat.router)
    app.include_router(health.router)
    return app


async def _load(app: FastAPI, settings: Settings) -> None:
    try:
        engine = await asyncio.to_thread(build_engine, settings)
    except Exception as err:  # reported by /readyz; the process stays up to say why
        log.exception("could not load the model %s", settings.model)
        app.state.load_error = str(err)
        return
    app.state.service = InferenceService(settings, engine)
    log.info("model %s ready", settings.model)
