"""Files a task made for one request (3D models, previews): whose they are, and how long they stay.

Each request's files live in ``<recon3d.artifacts_dir>/<request_id>/``. When the task has written
them, the service records the key that asked in an ``.owner`` file beside them; only that key may
download them (any other key, and a directory without an owner, is answered like a missing file).
Retention: directories older than ``recon3d.retention_seconds`` go, and then the oldest until the
whole tree is under ``recon3d.max_bytes``.

Several gateway replicas may share the directory (a volume all of them mount): everything about an
artefact is on disk (its owner file, written atomically; its age, the directory's mtime), none of it
in a process, so any replica serves, purges or expires what another made, and two replicas purging
at once each remove a directory only if they took it first (an atomic rename).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from vlserve.errors import NotFoundError
from vlserve.jobs import owner_of

T = TypeVar("T")

OWNER_FILE = ".owner"
_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SERVABLE = _SAFE  # request ids and file names a URL may name (never a dot-name)


def record_owner(directory: Path | None, key_id: str | None) -> None:
    """Mark the files in ``directory`` as ``key_id``'s; nothing happens if the task made none."""
    if directory is None or not directory.is_dir():
        return
    tmp = directory / f"{OWNER_FILE}.{secrets.token_hex(6)}.tmp"  # a name no other writer uses
    tmp.write_text(owner_of(key_id))
    os.replace(tmp, directory / OWNER_FILE)  # atomic: a reader sees no owner or the whole one


def artifact_path(root: Path, request_id: str, name: str, key_id: str | None) -> Path:
    """The file ``name`` of request ``request_id`` if it exists and belongs to ``key_id``.

    Raises NotFoundError otherwise, with the same message whether the file is missing or another
    key's, so that nobody learns which request ids exist.
    """
    missing = NotFoundError("no such artefact")
    if not (_SAFE.match(request_id) and _SAFE.match(name)):
        raise missing
    root = root.resolve()
    directory = root / request_id
    path = (directory / name).resolve()
    if path.parent != directory or name == OWNER_FILE or not path.is_file():
        raise missing
    try:
        owner = (directory / OWNER_FILE).read_text()
    except OSError:
        raise missing from None
    if owner != owner_of(key_id):
        raise missing
    return path


@dataclass
class PurgeReport:
    removed: int = 0
    freed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0


def purge_artifacts(root: Path, *, max_age: float, max_bytes: int, now: float | None = None) -> PurgeReport:
    """Delete request directories older than ``max_age`` seconds (0: no age limit), then the oldest
    until the rest take at most ``max_bytes`` (0: no size limit)."""
    report = PurgeReport()
    if not root.is_dir():
        return report
    now = time.time() if now is None else now
    entries: list[tuple[float, int, Path]] = []
    for directory in root.iterdir():
        try:
            if not directory.is_dir() or directory.is_symlink():
                continue
            entries.append((directory.stat().st_mtime, _size(directory), directory))
        except FileNotFoundError:  # removed meanwhile (another replica's purge, a served-once file)
            continue
    for size, directory in purge_order(entries, max_age=max_age, max_bytes=max_bytes, now=now, report=report):
        # Renamed out of reach first: of two replicas purging at once one takes the directory (the
        # other skips it), and nothing half-deleted stays downloadable (dot-names are never served).
        claimed = directory.with_name(f".purging-{secrets.token_hex(6)}-{directory.name}")
        try:
            directory.rename(claimed)
        except FileNotFoundError:
            continue
        shutil.rmtree(claimed, ignore_errors=True)
        report.removed += 1
        report.freed_bytes += size
    return report


def purge_order(entries: list[tuple[float, int, T]], *, max_age: float, max_bytes: int, now: float,
                report: PurgeReport) -> Iterator[tuple[int, T]]:
    """Of ``(made, bytes, item)`` entries, the ``(bytes, item)`` to delete, oldest first: those older
    than ``max_age`` seconds (0: no age limit), then the oldest while the rest hold more than
    ``max_bytes`` (0: no limit). Those kept are counted in ``report``; the caller counts what it
    really deletes (another replica may be purging too)."""
    ordered = sorted(entries, key=lambda entry: entry[0])
    total = sum(size for _, size, _ in ordered)
    for made, size, item in ordered:
        if not ((max_age > 0 and now - made > max_age) or (max_bytes > 0 and total > max_bytes)):
            report.kept += 1
            report.kept_bytes += size
            continue
        total -= size
        yield size, item


def _size(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
        except OSError:
            continue
    return total
