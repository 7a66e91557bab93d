"""The ASGI application: ``create_app(settings)``.

The engine is loaded in the background at startup (``/readyz`` answers 503 until it is warm) or
injected ready-made (tests, embedding).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from vlserve import __version__, isolation
from vlserve.api import artifacts, errors, health, infer, jobs, openai_compat, recon3d
from vlserve.api.docs import make_app
from vlserve.api.health import public_model_name
from vlserve.api.middleware import KeyRequired, RequestContext
from vlserve.config import Settings, Upstream
from vlserve.runtime.protocol import Engine, GenerationRequest, Message, SamplingParams
from vlserve.scheduling import Metrics, Scheduler
from vlserve.service.auth import keyring_for
from vlserve.service.inference import InferenceService
from vlserve.service.jobs import open_store, start_worker
from vlserve.service.retention import purge_forever

if TYPE_CHECKING:
    from pathlib import Path

    from vlserve.runtime.local import LocalEngine

log = logging.getLogger("vlserve")


def load_engine(settings: Settings, model: str, *, device: str, dtype: str, name: str,
                adapter: Path | None = None) -> LocalEngine:
    """An embedded engine, warmed up with one short generation."""
    from vlserve.media import VisionSettings
    from vlserve.runtime.loading import resolve_checkpoint
    from vlserve.runtime.local import LocalEngine

    ckpt = resolve_checkpoint(model)
    vision = VisionSettings.from_limits(settings.limits, checkpoint=ckpt.path)
    engine = LocalEngine(ckpt.path, device=device, dtype=dtype, vision=vision, name=name,  # type: ignore[arg-type]
                         adapter=adapter, cache=settings.cache.in_effect(settings.privacy.enabled))
    engine.generate_sync(GenerationRequest([Message("user", "warm up")], SamplingParams(max_tokens=1)))
    engine.grammar  # noqa: B018 - build the grammar tables now, not on the first structured request
    return engine


def build_engines(settings: Settings) -> dict[str, Engine]:
    """``main`` from ``settings.model`` (or a pool of ``settings.remote.upstreams``) plus every
    engine named in ``scheduling.models``. Pools of upstream servers never import torch."""
    engines: dict[str, Engine] = {}
    if settings.remote.upstreams:
        name = settings.model_name or settings.remote.upstream_model or "main"
        engines["main"] = build_pool(settings, settings.remote, name=name)
    else:
        # Named without the directory it was loaded from: names reach responses, metrics and /v1/models.
        main_name = settings.model_name or public_model_name(settings.model)
        engines["main"] = load_engine(settings, settings.model, device=settings.device, dtype=settings.dtype,
                                      name=main_name, adapter=settings.adapter)
    for name, extra in settings.scheduling.models.items():
        if extra.upstreams:
            engines[name] = build_pool(settings, extra, name=name)
        else:
            assert extra.model is not None  # ModelSettings: one of model/upstreams
            engines[name] = load_engine(settings, extra.model, device=extra.device, dtype=extra.dtype, name=name,
                                        adapter=extra.adapter)
    return engines


def build_pool(settings: Settings, options: Upstream, *, name: str) -> Engine:
    """Remote engines over ``options.upstreams`` (docs/remote.md)."""
    from vlserve.media import VisionSettings
    from vlserve.runtime.pool import EnginePool

    return EnginePool(options, VisionSettings.from_limits(settings.limits), name=name)


def batched(settings: Settings, engines: dict[str, Engine]) -> dict[str, Engine]:
    """Embedded engines get continuous batching with a row for every request their lanes may run
    at once, so that one lane's requests never wait for rows held by another's."""
    if "vlserve.runtime.local" not in sys.modules:
        # No engine can be a LocalEngine then: remote or test engines start without importing torch.
        return dict(engines)
    from vlserve.runtime.batching import BatchingEngine
    from vlserve.runtime.local import LocalEngine

    out: dict[str, Engine] = {}
    for name, engine in engines.items():
        if isinstance(engine, LocalEngine):
            sizes = [lane.concurrency for lane in settings.scheduling.lanes.values()
                     if name in (lane.model, lane.fallback)]
            engine = BatchingEngine(engine, max_batch=sum(sizes) or 8,
                                    max_tokens=settings.scheduling.batch_max_tokens,
                                    window_ms=settings.scheduling.batch_window_ms,
                                    prepare_workers=settings.scheduling.prepare_workers,
                                    min_step_ms=settings.scheduling.min_step_ms)
        out[name] = engine
    return out


def create_app(settings: Settings | None = None, engine: Engine | None = None,
               engines: dict[str, Engine] | None = None) -> FastAPI:
    """The service. ``engine``/``engines`` inject loaded engines (``main`` at least); otherwise
    they are loaded in the background from ``settings``."""
    settings = settings or Settings()
    if engine is not None:
        engines = {"main": engine, **(engines or {})}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        isolation.configure(settings.limits, warm=True)  # the PDF and video workers, started now
        app.state.jobs = open_store(settings.jobs)
        purger = asyncio.create_task(purge_forever(settings, app.state.jobs))  # retention, service/retention.py
        if engines is not None:
            scheduler = Scheduler(settings.scheduling, batched(settings, engines), app.state.metrics)
            _ready(app, InferenceService(settings, scheduler))
        else:
            app.state.loader = asyncio.create_task(_load(app, settings))
        yield
        purger.cancel()
        if getattr(app.state, "loader", None) is not None:
            app.state.loader.cancel()
        if app.state.worker is not None:
            await app.state.worker.stop(timeout=10)
            app.state.worker_task.cancel()
        await app.state.jobs.aclose()
        await app.state.keyring.aclose()
        service = getattr(app.state, "service", None)
        if service is not None:
            await service.aclose()

    app = make_app(  # /docs and /redoc with their assets served here (no CDN: they work offline)
        expose_docs=settings.expose_docs,
        title="vlserve",
        version=__version__,
        summary="Task API over Qwen3-VL: /infer, /infer_stream, OpenAI-compatible chat.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = None
    app.state.metrics = Metrics()
    app.state.worker = None
    app.state.keyring = keyring_for(settings)  # per-key rate limits: this process's or Redis's (shared)
    errors.install(app)
    protected = (*(("/docs", "/redoc", "/openapi.json") if settings.auth.protect_docs else ()),
                 *(("/metrics",) if settings.auth.protect_metrics else ()))
    app.add_middleware(KeyRequired, keyring=app.state.keyring, paths=protected)
    app.add_middleware(RequestContext, max_body_bytes=settings.limits.max_body_bytes,
                       body_timeout=settings.http.body_timeout, body_min_rate=settings.http.body_min_rate,
                       max_inflight_body_bytes=settings.http.max_inflight_body_bytes)
    app.include_router(infer.router)
    app.include_router(openai_compat.router)
    app.include_router(health.router)
    app.include_router(artifacts.router)
    app.include_router(jobs.router)
    app.include_router(recon3d.router)
    if settings.expose_ui:
        # The web demo, from the same origin as the API it calls: no CORS, and a key typed into the
        # page goes only to this server. `vlserve demo` serves the same files for remote servers.
        from starlette.staticfiles import StaticFiles

        from vlserve.demo.assets import STATIC_DIR

        app.mount("/ui", StaticFiles(directory=STATIC_DIR, html=True), name="ui")
    return app


async def _load(app: FastAPI, settings: Settings) -> None:
    try:
        engines = await asyncio.to_thread(build_engines, settings)
        scheduler = Scheduler(settings.scheduling, batched(settings, dict(engines)), app.state.metrics)
    except Exception as err:  # reported by /readyz; the process stays up to say why
        log.exception("could not load the model %s", settings.model)
        app.state.load_error = str(err)
        return
    _ready(app, InferenceService(settings, scheduler))
    log.info("model %s ready", settings.model)


def _ready(app: FastAPI, service: InferenceService) -> None:
    """The model is loaded: serve requests and start running async jobs."""
    app.state.service = service
    app.state.worker = start_worker(service.settings.jobs, app.state.jobs, service)
    if app.state.worker is not None:
        app.state.worker_task = asyncio.create_task(app.state.worker.run())
