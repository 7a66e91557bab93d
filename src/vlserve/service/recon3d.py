"""Rebuild an object spec a caller sent (``POST /recon3d/build``, the web demo's spec editor).

The same build as multiview_3d's answer: the spec is validated as given (no silent repairs: the
caller edited it and should hear what is wrong), counted against ``recon3d.max_primitives`` /
``max_triangles`` before any CSG, and compiled in the ``recon3d`` worker pool under its time and
memory limits. The files land in ``<recon3d.artifacts_dir>/<request_id>/``, belong to the caller's
key, and go with the same retention as every other request's files.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vlserve.config import Settings
from vlserve.recon3d.exporters import parse_formats
from vlserve.service import artifact_store, privacy
from vlserve.tasks.multiview_3d.building import build


async def build_spec(settings: Settings, spec: dict[str, Any], formats: list[str] | None, *,
                     request_id: str, key_id: str | None) -> dict[str, Any]:
    """Build ``spec`` into ``formats`` (default ``recon3d.default_formats``); the answer has the
    shape of multiview_3d's: ``spec``, ``description``, ``files`` (format → URL path), ``summary``,
    ``warnings``."""
    cfg = settings.recon3d
    chosen = parse_formats(formats if formats else cfg.default_formats)  # unknown ones: 4000, before work
    outdir = cfg.artifacts_dir / request_id
    try:
        built = await asyncio.to_thread(build, spec, outdir, chosen, cfg, repair=False)
    finally:  # privacy mode: the files go after privacy.artifact_seconds, a failed build's too
        privacy.expire_artifacts(settings, outdir)
    await artifact_store.keep(settings, outdir, key_id)  # the key's; with the S3 store, uploaded
    return {
        "spec": built.spec,
        "description": built.spec.get("description", ""),
        "files": {fmt: f"/artifacts/{request_id}/{path.name}" for fmt, path in built.files.items()},
        "summary": built.summary,
        "warnings": built.warnings,
    }
