"""``POST /recon3d/build`` over HTTP: a spec becomes files that only the caller's key can fetch."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from tests.api.helpers import KEYS

pytest.importorskip("manifold3d", reason="the recon3d extra builds the meshes")

FLANGE = {"name": "flange", "parts": [
    {"id": "disc", "shape": "cylinder", "op": "union", "size": {"diameter": 80, "height": 10}},
    {"id": "bore", "shape": "cylinder", "op": "subtract", "size": {"diameter": 20, "height": 12}},
]}


def test_a_spec_is_built_into_files_for_its_key(server: Any, alice: dict[str, str]) -> None:
    import trimesh

    reply = httpx.post(server.url + "/recon3d/build", json={"spec": FLANGE, "formats": ["glb", "stl"]},
                       headers=alice, timeout=120)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    answer = body["result"]["answer"]
    assert body["code"] == 0 and answer["spec"]["name"] == "flange"
    assert set(answer["files"]) == {"glb", "stl", "spec"}
    stl = httpx.get(server.url + answer["files"]["stl"], headers=alice)
    assert stl.status_code == 200
    mesh = trimesh.load(io.BytesIO(stl.content), file_type="stl")
    expected = 3.14159265 * (40**2 - 10**2) * 10  # the disc less the bore, in mm³
    assert mesh.volume == pytest.approx(expected, rel=0.01)
    other = httpx.get(server.url + answer["files"]["glb"], headers={"Authorization": f"Bearer {KEYS['bob']}"})
    assert other.status_code == 404  # another key's files do not exist for it


def test_a_bad_spec_or_format_is_refused_with_4000(server: Any, alice: dict[str, str]) -> None:
    bad = httpx.post(server.url + "/recon3d/build", headers=alice,
                     json={"spec": {"name": "x", "parts": [{"id": "a", "shape": "blob"}]}})
    assert bad.status_code == 400 and bad.json()["code"] == 4000 and "blob" in bad.json()["msg"]
    fmt = httpx.post(server.url + "/recon3d/build", headers=alice, json={"spec": FLANGE, "formats": ["dwg"]})
    assert fmt.status_code == 400 and fmt.json()["code"] == 4000 and "dwg" in fmt.json()["msg"]
    assert httpx.post(server.url + "/recon3d/build", json={"spec": FLANGE}).status_code == 401
