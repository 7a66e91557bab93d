"""Files a request made, kept in an S3-compatible bucket (``artifacts.store = "s3"``) so that every
gateway replica serves them (docs/deploy.md#artifacts-in-an-s3-compatible-store).

A task writes its files into ``<recon3d.artifacts_dir>/<request_id>/`` as always; :func:`keep` then
records the owner (:func:`~vlserve.service.artifacts.record_owner`) and, with the S3 store, uploads
each file to ``<s3_prefix>/<request_id>/<name>`` with the owner as object metadata, and removes the
local copy. An upload that fails (store unreachable, bucket missing, denied) is a logged warning: the
files stay in the local directory and this gateway serves them from there; the request succeeds.

``GET /artifacts/...`` asks the bucket first (:func:`fetch`): the object is streamed through the
gateway (never a redirect to the store, which would bypass the API key), in chunks, never more than
its announced length, which must be within ``recon3d.max_bytes``. Another key's object, a missing
one, one too large, or a store that does not answer: the same 404 as the local store's (the last
one after the local directory was asked too).

Privacy mode: a download first writes a claim object ``.taken-<name>`` beside the file with
``If-None-Match: *`` (a conditional write: of two downloads at once, one claims it and the other
gets a 404), and the object goes once served; what is not downloaded is deleted
``privacy.artifact_seconds`` after the request (:func:`expire_later`) or by the next purge.

Retention (:func:`purge_bucket`): the objects are grouped by request; a request whose newest
object is older than the age limit goes, then the oldest until the bucket's share is within
``recon3d.max_bytes``, as for the directory.

boto3 (``pip install "vlserve[s3]"``) is imported only when the S3 store is used.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vlserve.config import Artifacts, Settings
from vlserve.errors import NotFoundError
from vlserve.jobs import owner_of
from vlserve.service.artifacts import SERVABLE, PurgeReport, purge_order, record_owner

log = logging.getLogger("vlserve.artifacts")

OWNER_META = "vlserve-owner"  # x-amz-meta-vlserve-owner: the owner, percent-encoded (metadata is ASCII)
TAKEN = ".taken-"  # privacy mode's claim on a download: a dot-name no URL can name
CHUNK = 1024 * 1024  # bytes read from the store per step of a download
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()
_pending: set[asyncio.Task[None]] = set()  # privacy expiries under way (held so they are not collected)


def uses_s3(settings: Settings) -> bool:
    return settings.artifacts.store == "s3"


def _encoded(key_id: str | None) -> str:
    return quote(owner_of(key_id), safe="")


def _base(cfg: Artifacts) -> str:
    return f"{cfg.s3_prefix}/" if cfg.s3_prefix else ""


def object_key(cfg: Artifacts, request_id: str, name: str) -> str:
    """``<s3_prefix>/<request_id>/<name>``."""
    return f"{_base(cfg)}{request_id}/{name}"


def client(cfg: Artifacts) -> Any:
    """The boto3 S3 client for these settings (one per configuration; boto3 clients are thread-safe)."""
    secret = None if cfg.s3_secret_access_key is None else cfg.s3_secret_access_key.get_secret_value()
    access = None if cfg.s3_access_key_id is None else cfg.s3_access_key_id.get_secret_value()
    key = (cfg.s3_endpoint_url, cfg.s3_region, access, secret, cfg.s3_timeout)
    with _clients_lock:
        if key not in _clients:
            import boto3  # the s3 extra; never imported by a gateway with the local store
            from botocore.config import Config

            config = Config(connect_timeout=cfg.s3_timeout, read_timeout=cfg.s3_timeout,
                            retries={"max_attempts": 2, "mode": "standard"})
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=cfg.s3_endpoint_url, region_name=cfg.s3_region, aws_access_key_id=access,
                aws_secret_access_key=secret, config=config)
        return _clients[key]


def _store_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def _code(err: BaseException) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


# -- after a request: owner, upload ----------------------------------------------------------------
async def keep(settings: Settings, directory: Path | None, key_id: str | None) -> bool:
    """Record that the files in ``directory`` are ``key_id``'s and, with the S3 store, move them to
    the bucket (in a thread). False if the task made no files. Never raises for the store: a failed
    upload leaves the files where they are, served by this gateway, and logs a warning."""
    if directory is None or not directory.is_dir():
        return False
    record_owner(directory, key_id)
    if uses_s3(settings):
        try:
            await asyncio.to_thread(upload, settings, directory, key_id)
        except Exception as err:  # noqa: BLE001 - whatever the store or the disk said: the files stay local
            log.warning("artifacts of %s not uploaded to s3://%s (%s: %s); served from %s by this gateway only",
                        directory.name, settings.artifacts.s3_bucket, type(err).__name__, err, directory)
    return True


def upload(settings: Settings, directory: Path, key_id: str | None) -> int:
    """Upload the servable files of ``directory`` (a request's) and remove it; the number uploaded.
    Raises (and keeps the directory) if any upload fails or the files exceed ``recon3d.max_bytes``."""
    cfg, limit = settings.artifacts, settings.recon3d.max_bytes
    files = [p for p in sorted(directory.iterdir()) if SERVABLE.match(p.name) and p.is_file() and not p.is_symlink()]
    total = sum(p.stat().st_size for p in files)
    if limit and total > limit:
        raise ValueError(f"{total} bytes of files, more than recon3d.max_bytes ({limit})")
    s3 = client(cfg)
    for path in files:
        with path.open("rb") as body:
            s3.put_object(Bucket=cfg.s3_bucket, Key=object_key(cfg, directory.name, path.name), Body=body,
                          Metadata={OWNER_META: _encoded(key_id)})
    shutil.rmtree(directory, ignore_errors=True)
    return len(files)


# -- downloads ---------------------------------------------------------------------------------------
@dataclass
class Stored:
    """An object being downloaded: ``length`` bytes from :meth:`chunks`, then :meth:`finish`."""

    settings: Settings
    request_id: str
    name: str
    length: int
    body: Any  # botocore's StreamingBody
    once: bool  # privacy mode: delete it once served

    async def chunks(self) -> AsyncIterator[bytes]:
        """The object in chunks of at most :data:`CHUNK` bytes, never more than ``length`` in all."""
        left = self.length
        try:
            while left > 0:
                chunk = await asyncio.to_thread(self.body.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            self.body.close()

    async def finish(self) -> None:
        """After the response: in privacy mode, delete the object (and the request's claims once no
        file is left)."""
        self.body.close()
        if self.once:
            try:
                await asyncio.to_thread(_served_once, self.settings, self.request_id, self.name)
            except _store_errors() as err:  # the claim keeps it unreachable; the purge deletes it
                log.warning("served artefact %s/%s not deleted from the store: %s", self.request_id, self.name, err)


async def fetch(settings: Settings, request_id: str, name: str, key_id: str | None, *, once: bool) -> Stored | None:
    """The object for ``GET /artifacts/{request_id}/{name}``, or None if the store is local or the
    bucket has no such object (the local directory is asked next). Raises NotFoundError for another
    key's object, one larger than ``recon3d.max_bytes``, or (``once``) one already claimed."""
    if not uses_s3(settings) or not (SERVABLE.match(request_id) and SERVABLE.match(name)):
        return None
    return await asyncio.to_thread(_open, settings, request_id, name, key_id, once)


def _open(settings: Settings, request_id: str, name: str, key_id: str | None, once: bool) -> Stored | None:
    cfg, limit = settings.artifacts, settings.recon3d.max_bytes
    s3 = client(cfg)
    try:
        answer = s3.get_object(Bucket=cfg.s3_bucket, Key=object_key(cfg, request_id, name))
    except _store_errors() as err:
        if _code(err) not in ("NoSuchKey", "404"):
            log.warning("artefact %s/%s not read from s3://%s: %s", request_id, name, cfg.s3_bucket, err)
        return None
    body, length = answer["Body"], int(answer.get("ContentLength", 0))
    missing = NotFoundError("no such artefact")
    if answer.get("Metadata", {}).get(OWNER_META) != _encoded(key_id):
        body.close()
        raise missing
    if limit and length > limit:
        body.close()
        log.warning("artefact %s/%s in the store has %d bytes, more than recon3d.max_bytes", request_id, name, length)
        raise missing
    if once:
        try:  # of two downloads at once, one writes the claim; the other is refused by the store
            s3.put_object(Bucket=cfg.s3_bucket, Key=object_key(cfg, request_id, TAKEN + name), Body=b"",
                          IfNoneMatch="*")
        except _store_errors() as err:
            body.close()
            if _code(err) not in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                log.warning("artefact %s/%s not claimed in the store: %s", request_id, name, err)
            raise missing from None
    return Stored(settings, request_id, name, length, body, once)


def _served_once(settings: Settings, request_id: str, name: str) -> None:
    cfg = settings.artifacts
    s3 = client(cfg)
    s3.delete_object(Bucket=cfg.s3_bucket, Key=object_key(cfg, request_id, name))
    keys = _keys(s3, cfg, f"{_base(cfg)}{request_id}/")
    if all(k.rsplit("/", 1)[-1].startswith(".") for k in keys):  # no file left: the claims go too
        _delete(s3, cfg, keys)


# -- deletion: privacy expiry, retention ---------------------------------------------------------------
def forget(settings: Settings, request_id: str) -> int:
    """Delete every object of ``request_id``; how many there were."""
    cfg = settings.artifacts
    s3 = client(cfg)
    keys = _keys(s3, cfg, f"{_base(cfg)}{request_id}/")
    _delete(s3, cfg, keys)
    return len(keys)


def expire_later(settings: Settings, request_id: str, delay: float) -> None:
    """Delete ``request_id``'s objects ``delay`` seconds from now (privacy mode), in a thread."""
    loop = asyncio.get_running_loop()

    def start() -> None:
        task = loop.create_task(_expire(settings, request_id))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    loop.call_later(delay, start)


async def _expire(settings: Settings, request_id: str) -> None:
    try:
        await asyncio.to_thread(forget, settings, request_id)
    except Exception as err:  # noqa: BLE001 - the next purge (privacy.artifact_seconds) deletes them
        log.warning("artifacts of %s not deleted from the store (the next purge will): %s", request_id, err)


def purge_bucket(settings: Settings, *, max_age: float, max_bytes: int, now: float | None = None) -> PurgeReport:
    """The bucket's share of :func:`~vlserve.service.artifacts.purge_artifacts`: requests whose newest
    object is older than ``max_age`` seconds (0: no age limit), then the oldest until the rest hold
    at most ``max_bytes`` (0: no limit). A store that cannot be reached is logged, not raised."""
    report = PurgeReport()
    cfg = settings.artifacts
    now = time.time() if now is None else now
    try:
        s3 = client(cfg)
        groups: dict[str, tuple[float, int, list[str]]] = {}
        base = _base(cfg)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.s3_bucket, Prefix=base):
            for item in page.get("Contents", []):
                request_id, _, rest = item["Key"][len(base):].partition("/")
                if not rest:  # not ours: nothing of vlserve's sits directly under the prefix
                    continue
                made, size, keys = groups.get(request_id, (0.0, 0, []))
                keys.append(item["Key"])
                groups[request_id] = (max(made, item["LastModified"].timestamp()), size + int(item["Size"]), keys)
        for size, keys in purge_order(list(groups.values()), max_age=max_age, max_bytes=max_bytes, now=now,
                                      report=report):
            _delete(s3, cfg, keys)
            report.removed += 1
            report.freed_bytes += size
    except _store_errors() as err:
        log.warning("artifacts in s3://%s not purged this time: %s", cfg.s3_bucket, err)
    return report


def _keys(s3: Any, cfg: Artifacts, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=cfg.s3_bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _delete(s3: Any, cfg: Artifacts, keys: list[str]) -> None:
    for start in range(0, len(keys), _DELETE_BATCH):  # deleting what another replica deleted is no error
        batch = [{"Key": k} for k in keys[start:start + _DELETE_BATCH]]
        s3.delete_objects(Bucket=cfg.s3_bucket, Delete={"Objects": batch, "Quiet": True})
