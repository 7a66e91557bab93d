"""multiview_3d over HTTP with a scripted engine: every answer ends in a model or a coded refusal.

The engine is :class:`vlserve.testing.FakeEngine` answering with chosen text (the model is the
external boundary here: what it writes is the input under test); the service, the task, the
worker pools and the HTTP layer are the real ones.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("manifold3d", reason="needs the 'recon3d' extra (manifold3d, trimesh)")

from tests.api.helpers import make_settings, run_server
from tests.recon3d.helpers import FLANGE
from vlserve.testing.fake_engine import FakeEngine

SLOW = {"name": "slow", "parts": [{"id": "plate", "shape": "box", "size": {"x": 2000, "y": 200, "z": 5}}] + [
    {"id": f"h{i}", "shape": "cylinder", "size": {"diameter": 2, "height": 6}, "op": "subtract",
     "position": [-995 + i * 19.9, 0, 0]} for i in range(100)]}
HUGE = {"name": "huge", "parts": [FLANGE["parts"][0], {**FLANGE["parts"][2], "pattern": {
    "kind": "linear", "count": 1000, "step": [0.01, 0, 0]}, "mirror": ["xy", "yz", "xz"]}]}
ANSWERS: dict[str, str] = {
    "flange": json.dumps(FLANGE),
    "cut": json.dumps(FLANGE)[:-60],
    "chatter": "Sure! Here is the object:\n" + json.dumps(FLANGE) + "\nAnything else?",
    "prose": "I cannot tell what this object is.",
    "slow": json.dumps(SLOW, separators=(",", ":")),  # compact: the whole spec fits max_tokens
    "huge": json.dumps(HUGE),
}


class ScriptedModel(FakeEngine):
    """A model that writes the scripted text even under a JSON schema (as a remote engine that
    ignores the schema would); everything else is :class:`FakeEngine`'s."""

    def _pieces(self, request: Any) -> tuple[list[str], Any]:
        return super()._pieces(replace(request, params=replace(request.params, json_schema=None)))


def _reply(request: Any) -> str:
    text = " ".join(getattr(p, "text", "") for m in request.messages if isinstance(m.content, list)
                    for p in m.content)
    return next(answer for key, answer in ANSWERS.items() if f"case={key}" in text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from vlserve.api.app import create_app

    tmp = tmp_path_factory.mktemp("r3d-http")
    settings = make_settings(tmp, recon3d={"artifacts_dir": str(tmp / "artifacts"), "compile_seconds": 1.0,
                                           "export_seconds": 1.0})
    yield from run_server(create_app(settings, engine=ScriptedModel(reply=_reply)))


def _ask(url: str, case: str) -> httpx.Response:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return httpx.post(url + "/infer", json={"task": "multiview_3d", "images": [image], "text": f"case={case}",
                                            "options": {"formats": ["stl"], "max_tokens": 512}}, timeout=120)


@pytest.mark.parametrize(("case", "status", "code"), [
    ("flange", 200, 0), ("cut", 200, 0), ("chatter", 200, 0),
    ("prose", 400, 4000), ("huge", 400, 4000), ("slow", 422, 4013),
])
def test_every_answer_is_a_model_or_a_coded_refusal(server: str, case: str, status: int, code: int) -> None:
    reply = _ask(server, case)
    assert reply.status_code == status, reply.text
    body = reply.json()
    if status == 200:
        answer = body["result"]["answer"]
        assert set(answer["files"]) == {"stl", "spec"} and answer["summary"]["watertight"]
        assert answer["summary"]["written"]["stl"]["watertight"] is True
        assert (case == "cut") == any("cut off at max_tokens" in w for w in answer["warnings"])
        return
    assert body["code"] == code and body["msg"]
    if case == "slow":
        assert "recon3d.compile_seconds" in body["msg"]
    if case == "huge":
        assert "recon3d.max_primitives" in body["msg"]
