"""``GET /artifacts/{request_id}/{name}``: files a task made for a request (3D models, previews).

Only the key that made the request may download its files; for any other key they do not exist.
In privacy mode each file is served once, then deleted (docs/api.md#privacy-mode). With
``artifacts.store = "s3"`` the bucket is asked first and its object streamed through (never a
redirect, which would bypass the key), then the local directory (files whose upload failed).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from vlserve.api.deps import caller
from vlserve.service import artifact_store, privacy
from vlserve.service.artifacts import artifact_path

router = APIRouter()
MEDIA_TYPES = {".glb": "model/gltf-binary", ".stl": "model/stl", ".obj": "model/obj", ".ply": "application/ply",
               ".step": "model/step", ".scad": "text/plain", ".py": "text/x-python", ".png": "image/png",
               ".json": "application/json", ".mtl": "text/plain"}


@router.get("/artifacts/{request_id}/{name}")
async def artifact(request_id: str, name: str, request: Request,
                   key_id: Annotated[str | None, Depends(caller)]) -> Response:
    settings = request.app.state.settings
    stored = await artifact_store.fetch(settings, request_id, name, key_id, once=privacy.enabled(settings))
    if stored is not None:
        headers = {"content-length": str(stored.length), "content-disposition": f'attachment; filename="{name}"'}
        return StreamingResponse(stored.chunks(), media_type=MEDIA_TYPES.get(PurePath(name).suffix,
                                 "application/octet-stream"), headers=headers, background=BackgroundTask(stored.finish))
    path = privacy.take(settings, artifact_path(settings.recon3d.artifacts_dir, request_id, name, key_id))
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), filename=name,
                        background=BackgroundTask(privacy.served_once, settings, path))
