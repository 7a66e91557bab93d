"""``GET /artifacts/{request_id}/{name}``: files a task made for a request (3D models, previews)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from vlserve.api.deps import caller
from vlserve.errors import NotFoundError

router = APIRouter()
_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
MEDIA_TYPES = {".glb": "model/gltf-binary", ".stl": "model/stl", ".obj": "model/obj", ".ply": "application/ply",
               ".step": "model/step", ".scad": "text/plain", ".py": "text/x-python", ".png": "image/png",
               ".json": "application/json", ".mtl": "text/plain"}


@router.get("/artifacts/{request_id}/{name}")
async def artifact(request_id: str, name: str, request: Request,
                   key_id: Annotated[str | None, Depends(caller)]) -> FileResponse:
    root = request.app.state.settings.recon3d.artifacts_dir.resolve()
    if not (_SAFE.match(request_id) and _SAFE.match(name)) or name.startswith("."):
        raise NotFoundError("no such artefact")
    path = (root / request_id / name).resolve()
    if path.parent.parent != root or not path.is_file():
        raise NotFoundError("no such artefact")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"), filename=name)
