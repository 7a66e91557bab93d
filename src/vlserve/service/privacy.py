"""Privacy mode (``privacy.enabled``; docs/api.md#privacy-mode): what one switch changes.

* Input URLs are refused before anything is fetched (1008): the server makes no outbound request
  on a caller's behalf. Inline data (base64, data URIs) and, where configured, server-local files
  still work.
* Every image's metadata (EXIF with GPS, XMP, IPTC, comments) is removed once its header passed the
  limits and before it is decoded or handed to anything else (:mod:`vlserve.media.metadata`).
* Async jobs are refused (4030): a job's request, inline media included, and its answer would be
  stored until purged. Encrypting them instead was rejected: the key would have to sit beside the
  store on every worker that runs jobs, so it protects copies of the disk but not the host, and
  "nothing kept" is a promise an operator can check, where "kept, encrypted" is not.
* Files a request made (3D models) are served once and then deleted; what is not downloaded goes
  ``privacy.artifact_seconds`` after the request (and at the next purge after a restart).
* The audit log keeps request id, key id, stage and rule, without the hashes of the text and
  inputs (a short text's hash is guessable, and an image's hash proves who sent a known picture).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from vlserve.config import Settings
from vlserve.errors import FetchRefusedError, NotFoundError, PrivacyModeError
from vlserve.inputs import Source
from vlserve.media.metadata import strip_metadata
from vlserve.service import artifact_store
from vlserve.service.artifacts import OWNER_FILE

URL_REFUSED = ("input URLs are not fetched in privacy mode (this server makes no outbound requests for "
               "callers); send the input inline as base64 or a data URI")
JOBS_REFUSED = ("async jobs are not available in privacy mode: a job's inputs and answer would be stored; "
                "send the request to /infer or /infer_stream instead")


def enabled(settings: Settings) -> bool:
    return settings.privacy.enabled


def refuse_urls(settings: Settings, refs: Iterable[str]) -> None:
    """In privacy mode, raise FetchRefusedError (1008) if any reference is an http(s) URL."""
    if enabled(settings) and any(ref.lstrip()[:8].lower().startswith(("http://", "https://")) for ref in refs):
        raise FetchRefusedError(URL_REFUSED)


def refuse_jobs(settings: Settings) -> None:
    """In privacy mode, raise PrivacyModeError (4030): jobs store their inputs."""
    if enabled(settings):
        raise PrivacyModeError(JOBS_REFUSED)


async def scrub_images(settings: Settings, sources: list[Source]) -> list[Source]:
    """In privacy mode, ``sources`` (images whose headers passed the limits) without metadata."""
    if not enabled(settings):
        return sources
    cleaned = await asyncio.gather(*(asyncio.to_thread(strip_metadata, s.data) for s in sources))
    return [Source(data, s.origin, None) for data, s in zip(cleaned, sources, strict=True)]


def expire_artifacts(settings: Settings, directory: Path | None) -> None:
    """In privacy mode, delete ``directory`` (a request's files) ``privacy.artifact_seconds`` from now."""
    if not enabled(settings) or directory is None or not directory.is_dir():
        return
    asyncio.get_running_loop().call_later(settings.privacy.artifact_seconds, shutil.rmtree, directory, True)
    if artifact_store.uses_s3(settings):  # the copy uploaded meanwhile goes at the same time
        artifact_store.expire_later(settings, directory.name, settings.privacy.artifact_seconds)


def take(settings: Settings, path: Path) -> Path:
    """In privacy mode, move an artefact about to be served out of reach of the next download (a
    dot-name no URL can name): of two requests at once, one gets the file and the other a 404."""
    if not enabled(settings):
        return path
    taken = path.with_name(f".taken-{secrets.token_hex(8)}-{path.name}")
    try:
        path.rename(taken)
    except FileNotFoundError:
        raise NotFoundError("no such artefact") from None
    return taken


def served_once(settings: Settings, path: Path) -> None:
    """In privacy mode, delete a served artefact, and its request's directory once it holds no other."""
    if not enabled(settings):
        return
    path.unlink(missing_ok=True)
    directory = path.parent
    with contextlib.suppress(FileNotFoundError):
        if all(p.name == OWNER_FILE for p in directory.iterdir()):  # none left, none being served
            shutil.rmtree(directory, ignore_errors=True)
