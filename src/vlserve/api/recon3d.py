"""``POST /recon3d/build``: an object spec → the files multiview_3d makes, without the model.

Translation only; the build and its limits are :mod:`vlserve.service.recon3d`'s.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from vlserve.api.deps import caller
from vlserve.api.errors import request_id_of
from vlserve.service.recon3d import build_spec

router = APIRouter(prefix="/recon3d")


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] = Field(description="An object spec (`vlserve recon3d schema`), e.g. a multiview_3d answer's.")
    formats: list[str] | None = Field(None, max_length=16,
                                      description="Files to write (default: recon3d.default_formats).")


@router.post("/build")
async def build(body: BuildRequest, request: Request,
                key_id: Annotated[str | None, Depends(caller)]) -> dict[str, Any]:
    """Build a spec into GLB, STL, OBJ, PLY, OpenSCAD, Blender and PNG files (STEP on request).

    Answers like ``/infer``: ``{"request_id", "code": 0, "msg", "result": {"answer": {"spec",
    "description", "files", "summary", "warnings"}}}``; the files download from ``/artifacts/...``
    with the same key.
    """
    request_id = request_id_of(request)
    answer = await build_spec(request.app.state.settings, body.spec, body.formats, request_id=request_id,
                              key_id=key_id)
    return {"request_id": request_id, "code": 0, "msg": "success", "result": {"answer": answer}}
