"""Retention: finished jobs, artifacts and old audit logs are deleted by age and by quota.

The server runs :func:`purge` every ``retention.purge_interval`` seconds (:func:`purge_forever`);
``vlserve purge`` runs it once. The limits:

| what | by age | by amount |
|---|---|---|
| finished jobs | `jobs.retention_seconds` | `jobs.max_finished` (count) |
| artifacts (per-request directories, and objects in the S3 store) | `recon3d.retention_seconds` | `recon3d.max_bytes` |
| audit logs | — | rotated past `moderation.audit_max_bytes`, `moderation.audit_keep` kept |

Queued and running jobs are never deleted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import asdict, dataclass

from vlserve.config import Settings
from vlserve.jobs import JobStore
from vlserve.service import artifact_store
from vlserve.service.artifacts import purge_artifacts

log = logging.getLogger("vlserve.retention")


@dataclass
class PurgeSummary:
    jobs_deleted: int
    artifact_dirs_deleted: int
    artifact_bytes_freed: int
    audit_files_deleted: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def purge(settings: Settings, store: JobStore | None) -> PurgeSummary:
    """Apply every retention limit once."""
    jobs = 0
    if store is not None:
        jobs = await store.purge(max_age=settings.jobs.retention_seconds, keep_finished=settings.jobs.max_finished)
    max_age = settings.recon3d.retention_seconds
    if settings.privacy.enabled:  # files left by a restart or a failed build go after privacy.artifact_seconds
        max_age = min(max_age or settings.privacy.artifact_seconds, settings.privacy.artifact_seconds)
    artifacts = await asyncio.to_thread(purge_artifacts, settings.recon3d.artifacts_dir, max_age=max_age,
                                        max_bytes=settings.recon3d.max_bytes)
    if artifact_store.uses_s3(settings):  # the same limits in the bucket (the directory holds only failed uploads)
        stored = await asyncio.to_thread(artifact_store.purge_bucket, settings, max_age=max_age,
                                         max_bytes=settings.recon3d.max_bytes)
        artifacts.removed += stored.removed
        artifacts.freed_bytes += stored.freed_bytes
    audit = await asyncio.to_thread(_purge_audit, settings)
    return PurgeSummary(jobs, artifacts.removed, artifacts.freed_bytes, audit)


def _purge_audit(settings: Settings) -> int:
    """Rotated audit logs beyond ``moderation.audit_keep`` (left when the setting was lowered)."""
    path = settings.moderation.audit_log
    if not path.parent.is_dir():
        return 0
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    deleted = 0
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and int(match.group(1)) > settings.moderation.audit_keep:
            candidate.unlink(missing_ok=True)
            deleted += 1
    return deleted


async def purge_forever(settings: Settings, store: JobStore | None) -> None:
    """Purge every ``retention.purge_interval`` seconds until cancelled (the first one at once)."""
    interval = settings.retention.purge_interval
    if interval <= 0:
        return
    while True:
        try:
            summary = await purge(settings, store)
            if any(summary.as_dict().values()):
                log.info("purged %s", summary.as_dict())
        except Exception:  # a store that is briefly unreachable: try again next time
            log.exception("purge failed")
        await asyncio.sleep(interval)
