"""Artifacts in an S3-compatible store (``artifacts.store = "s3"``, docs/deploy.md#artifacts-in-an-s3-compatible-store).

The store is moto's S3 server on loopback (``ThreadedMotoServer``): a stand-in at the external
boundary for AWS S3 / MinIO / Ceph, spoken to over real HTTP by the real boto3 client. The model is
the other boundary: :class:`ScriptedModel` answers multiview_3d with a fixed spec. Everything
between (HTTP, lanes, the 3D build in its worker, upload, download, purge) is the real code.

- a multiview_3d request's files end up in the bucket, with the owner as metadata, and not in the
  gateway's directory; a second gateway that shares only the bucket serves them (same bytes, same
  content type); another key gets the same 404 as for a missing file, on both;
- a download larger than ``recon3d.max_bytes`` is the same 404;
- the purge deletes them by age, and by size through the retention pass;
- a missing bucket: the upload fails with a warning, the request succeeds, its files stay local and
  are served from there;
- privacy mode: of simultaneous downloads one gets the file, then it is gone from the bucket, and
  what is not downloaded is deleted from the bucket after ``privacy.artifact_seconds``;
- the local store (default) never imports boto3.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

pytest.importorskip("manifold3d", reason="the recon3d extra builds the meshes")
pytest.importorskip("boto3", reason="the s3 extra")
moto_server = pytest.importorskip("moto.server", reason="moto[server]: the S3 stand-in")

from vlserve.api.app import create_app  # noqa: E402
from vlserve.config import ApiKey, Settings  # noqa: E402
from vlserve.service import artifact_store  # noqa: E402
from vlserve.service.auth import hash_key  # noqa: E402
from vlserve.service.retention import purge  # noqa: E402
from vlserve.testing import FakeEngine  # noqa: E402
from vlserve.testing.server import iter_server  # noqa: E402

ALICE_KEY, BOB_KEY = "vls-s3-alice", "vls-s3-bob"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
BUCKET = "vlserve-artifacts-test"
DISC = {"spec_version": "1.0", "name": "disc",
        "parts": [{"id": "d", "shape": "cylinder", "size": {"diameter": 40, "height": 5}}]}


class ScriptedModel(FakeEngine):
    """A model that writes the scripted spec even under a JSON schema (test double at the model
    boundary); everything else is :class:`FakeEngine`'s."""

    def _pieces(self, request: Any) -> tuple[list[str], Any]:
        return super()._pieces(replace(request, params=replace(request.params, json_schema=None)))


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (external-boundary stand-in), with the test bucket."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        bucket_client(url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        server.stop()


def bucket_client(url: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def settings_for(tmp: Path, s3_url: str, *, bucket: str = BUCKET, prefix: str = "shared",
                 privacy: bool = False) -> Settings:
    keys = [ApiKey(id="alice", sha256=hash_key(ALICE_KEY)).model_dump(),
            ApiKey(id="bob", sha256=hash_key(BOB_KEY)).model_dump()]
    return Settings.model_validate({
        "data_dir": str(tmp),  # each gateway its own: the bucket is all they share
        "auth": {"keys": keys},
        "retention": {"purge_interval": 0},
        "privacy": {"enabled": privacy},
        "artifacts": {"store": "s3", "s3_bucket": bucket, "s3_prefix": prefix, "s3_endpoint_url": s3_url,
                      "s3_region": "us-east-1", "s3_access_key_id": "testing", "s3_secret_access_key": "testing",
                      "s3_timeout": 5},
    })


Gateway = tuple[str, Settings]


@pytest.fixture(scope="module")
def start_gateway(tmp_path_factory: pytest.TempPathFactory, s3_url: str) -> Iterator[Callable[..., Gateway]]:
    """Start a gateway (a real server on loopback, the scripted model) with ``settings_for``'s options."""
    running: list[Iterator[str]] = []

    def start(**options: Any) -> Gateway:
        settings = settings_for(tmp_path_factory.mktemp("gateway"), s3_url, **options)
        served = iter_server(create_app(settings, engine=ScriptedModel("scripted", reply=json.dumps(DISC))))
        running.append(served)
        return next(served), settings

    yield start
    for served in running:
        served.close()


@pytest.fixture(scope="module")
def pair(start_gateway: Callable[..., Gateway]) -> tuple[Gateway, Gateway]:
    return start_gateway(), start_gateway()


def photo() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 120, 20)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def make_model(url: str, headers: dict[str, str] = ALICE) -> tuple[str, dict[str, str]]:
    """A multiview_3d request: its request id and files (format -> URL path)."""
    body = {"task": "multiview_3d", "images": [photo()], "options": {"max_tokens": 400, "formats": ["stl", "glb"]}}
    reply = httpx.post(url + "/infer", json=body, headers=headers, timeout=120)
    assert reply.status_code == 200, reply.text
    files: dict[str, str] = reply.json()["result"]["answer"]["files"]
    assert {"stl", "glb"} <= set(files), files
    return files["stl"].split("/")[2], files


def objects(url: str, prefix: str) -> dict[str, int]:
    listed = bucket_client(url).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"]: item["Size"] for item in listed.get("Contents", [])}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_files_go_to_the_bucket_and_any_gateway_serves_them_to_their_key(pair: tuple[Gateway, Gateway],
                                                                         s3_url: str) -> None:
    (a_url, a_settings), (b_url, b_settings) = pair
    request_id, files = make_model(a_url)
    stored = objects(s3_url, f"shared/{request_id}/")
    names = {path.rsplit("/", 1)[1] for path in files.values()}
    assert {f"shared/{request_id}/{name}" for name in names} <= set(stored), stored
    assert all(stored[f"shared/{request_id}/{name}"] > 0 for name in names)
    head = bucket_client(s3_url).head_object(Bucket=BUCKET, Key=f"shared/{request_id}/model.stl")
    assert head["Metadata"] == {"vlserve-owner": "alice"}
    # Moved, not copied: the gateway that built them keeps nothing; the other never had them.
    assert not (a_settings.recon3d.artifacts_dir / request_id).exists()
    assert not (b_settings.recon3d.artifacts_dir / request_id).exists()

    in_bucket = bucket_client(s3_url).get_object(Bucket=BUCKET, Key=f"shared/{request_id}/model.stl")["Body"].read()
    for url in (a_url, b_url):  # B shares only the bucket with A
        got = httpx.get(url + files["stl"], headers=ALICE, timeout=30)
        assert got.status_code == 200, got.text
        assert got.content == in_bucket and got.content
        assert got.headers["content-type"] == "model/stl"  # as the local store answers
        assert got.headers["content-disposition"] == 'attachment; filename="model.stl"'
        glb = httpx.get(url + files["glb"], headers=ALICE, timeout=30)
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
        assert glb.headers["content-type"] == "model/gltf-binary"
        # Another key: the same 404 as for a file that does not exist (no way to probe request ids).
        foreign = httpx.get(url + files["stl"], headers=BOB, timeout=30)
        missing = httpx.get(f"{url}/artifacts/{request_id}/nothing.stl", headers=ALICE, timeout=30)
        assert foreign.status_code == missing.status_code == 404
        assert foreign.json()["code"] == missing.json()["code"] == 4040
        assert foreign.json()["msg"] == missing.json()["msg"]
        assert httpx.get(url + files["stl"], timeout=30).status_code == 401
        # Dot-names (privacy mode's claims) are never served.
        assert httpx.get(f"{url}/artifacts/{request_id}/.taken-model.stl", headers=ALICE).status_code == 404


def test_a_download_is_bounded_by_recon3d_max_bytes(pair: tuple[Gateway, Gateway], s3_url: str) -> None:
    (url, settings), _ = pair
    data = bytes(range(256)) * 8  # 2 KiB, put straight into the bucket as alice's
    bucket_client(s3_url).put_object(Bucket=BUCKET, Key="shared/req_big/big.stl", Body=data,
                                     Metadata={"vlserve-owner": "alice"})
    got = httpx.get(url + "/artifacts/req_big/big.stl", headers=ALICE, timeout=30)
    assert got.status_code == 200 and got.content == data and got.headers["content-length"] == str(len(data))
    settings.recon3d.max_bytes = len(data) - 1
    try:
        over = httpx.get(url + "/artifacts/req_big/big.stl", headers=ALICE, timeout=30)
    finally:
        settings.recon3d.max_bytes = Settings().recon3d.max_bytes
    assert over.status_code == 404 and over.json()["code"] == 4040


def test_purge_deletes_old_objects_and_keeps_young_ones(start_gateway: Callable[..., Gateway], s3_url: str) -> None:
    url, settings = start_gateway(prefix="purged")  # a prefix of its own: the purge sees nothing else
    _, files = make_model(url)
    make_model(url)
    # Age: the retention pass with the default limits keeps both (made a moment ago) ...
    summary = asyncio.run(purge(settings, None))
    assert summary.artifact_dirs_deleted == 0 and len({k.split("/")[1] for k in objects(s3_url, "purged/")}) == 2
    # ... an hour later, with a one-minute limit, both go.
    report = artifact_store.purge_bucket(settings, max_age=60, max_bytes=0, now=time.time() + 3600)
    assert report.removed == 2 and report.freed_bytes > 0
    assert objects(s3_url, "purged/") == {}
    assert httpx.get(url + files["stl"], headers=ALICE, timeout=30).status_code == 404
    # Size, through the retention pass: past recon3d.max_bytes the requests go, oldest first.
    kept_id, _ = make_model(url)
    size = sum(objects(s3_url, f"purged/{kept_id}/").values())
    settings.recon3d.max_bytes = size - 1
    try:
        summary = asyncio.run(purge(settings, None))
    finally:
        settings.recon3d.max_bytes = Settings().recon3d.max_bytes
    assert summary.artifact_dirs_deleted == 1 and summary.artifact_bytes_freed == size
    assert objects(s3_url, "purged/") == {}


def test_a_failed_upload_keeps_the_files_served_locally(start_gateway: Callable[..., Gateway], s3_url: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    url, settings = start_gateway(bucket="no-such-bucket")
    with caplog.at_level(logging.WARNING, logger="vlserve.artifacts"):
        request_id, files = make_model(url)  # the request succeeds
    assert any("not uploaded" in r.getMessage() and request_id in r.getMessage() for r in caplog.records)
    local = settings.recon3d.artifacts_dir / request_id / "model.stl"
    assert local.is_file()
    got = httpx.get(url + files["stl"], headers=ALICE, timeout=30)
    assert got.status_code == 200 and got.content == local.read_bytes()
    assert httpx.get(url + files["stl"], headers=BOB, timeout=30).status_code == 404
    assert not any(request_id in key for key in objects(s3_url, ""))


def test_privacy_mode_serves_once_from_the_bucket_and_expires_the_rest(start_gateway: Callable[..., Gateway],
                                                                        s3_url: str) -> None:
    url, settings = start_gateway(prefix="private", privacy=True)
    request_id, files = make_model(url)
    assert objects(s3_url, f"private/{request_id}/")
    # Foreign keys cannot burn the download.
    assert httpx.get(url + files["stl"], headers=BOB, timeout=30).status_code == 404
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: httpx.get(url + files["stl"], headers=ALICE, timeout=30).status_code,
                                   range(6)))
    assert statuses == [200] + [404] * 5
    wait_until(lambda: f"private/{request_id}/model.stl" not in objects(s3_url, f"private/{request_id}/"),
               "the served object to be deleted")
    # Once the last file is served, the request's objects (claims included) are all gone.
    for fmt in set(files) - {"stl"}:
        assert httpx.get(url + files[fmt], headers=ALICE, timeout=30).status_code == 200
    wait_until(lambda: objects(s3_url, f"private/{request_id}/") == {}, "the request's objects to be deleted")
    # Not downloaded: deleted from the bucket privacy.artifact_seconds after the request.
    settings.privacy.artifact_seconds = 0.3
    try:
        left_id, _ = make_model(url)
    finally:
        settings.privacy.artifact_seconds = 300.0
    wait_until(lambda: objects(s3_url, f"private/{left_id}/") == {}, "the undownloaded objects to expire")


def test_settings_are_checked_at_load() -> None:
    ok = Settings.model_validate({"artifacts": {"store": "s3", "s3_bucket": "my-bucket", "s3_prefix": "/a/b/"}})
    assert ok.artifacts.s3_prefix == "a/b"
    for bad in ({"store": "s3"}, {"store": "s3", "s3_bucket": "Bad_Bucket"},
                {"store": "s3", "s3_bucket": "my-bucket", "s3_access_key_id": "only-half"},
                {"store": "s3", "s3_bucket": "my-bucket", "s3_prefix": "a b"},
                {"store": "s3", "s3_bucket": "my-bucket", "s3_endpoint_url": "minio:9000"},
                {"store": "ftp"}):
        with pytest.raises(ValueError, match="artifacts"):
            Settings.model_validate({"artifacts": bad})


def test_the_local_store_never_imports_boto3(tmp_path: Path) -> None:
    script = f"""
import sys
from starlette.testclient import TestClient
from vlserve.api.app import create_app
from vlserve.config import Settings
from vlserve.testing import FakeEngine
settings = Settings.model_validate({{"data_dir": {str(tmp_path)!r}, "retention": {{"purge_interval": 0}}}})
with TestClient(create_app(settings, engine=FakeEngine("fake"))) as client:
    assert client.get("/artifacts/req_x/model.stl").status_code == 404
print("boto3" in sys.modules, "botocore" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"
