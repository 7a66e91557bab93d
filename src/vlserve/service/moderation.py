"""Sensitive-content policy (code 3001) and its append-only audit log.

The policy is a configurable list of case-insensitive terms checked on the request text and,
when enabled, on the model's answer. Every refusal is appended to a JSON-lines audit log with
the request id, the key id, the stage, which rule matched and SHA-256 hashes of the inputs —
never the raw images or documents (in privacy mode not even the hashes). The log lives in the data directory
(``moderation.audit_log``) and is rotated past ``moderation.audit_max_bytes``, keeping
``moderation.audit_keep`` older files (``audit.jsonl.1`` is the newest of them).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

from vlserve.config import Moderation
from vlserve.errors import SensitiveContentError


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = 16 * 1024 * 1024, keep: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()

    def rotated(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _rotate_if_full(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        # audit.jsonl -> .1 -> .2 ... -> .keep; the oldest beyond `keep` is deleted.
        self.rotated(self.keep + 1).unlink(missing_ok=True)
        for index in range(self.keep, 0, -1):
            older = self.path if index == 1 else self.rotated(index - 1)
            if older.exists():
                older.replace(self.rotated(index))
        if self.keep == 0:
            self.path.unlink(missing_ok=True)

    def append(self, entry: dict[str, object]) -> None:
        line = json.dumps({"time": time.time(), **entry}, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_if_full(len(line.encode()))
            # O_APPEND: concurrent writers (several workers) never overwrite each other's lines.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)


class Moderator:
    def __init__(self, settings: Moderation, *, hashes: bool = True) -> None:
        self.settings = settings
        self.hashes = hashes  # False in privacy mode: entries name the rule, not the content
        self.terms = [t.casefold() for t in settings.blocked_terms if t.strip()]
        self.audit = AuditLog(settings.audit_log, settings.audit_max_bytes, settings.audit_keep)

    def _match(self, text: str) -> int | None:
        folded = text.casefold()
        return next((i for i, term in enumerate(self.terms) if term in folded), None)

    def check(
        self, text: str, *, stage: str, request_id: str, key_id: str | None, input_hashes: list[str]
    ) -> None:
        """Raise SensitiveContentError (and audit it) when ``text`` breaks the policy."""
        if not self.settings.enabled or (stage == "output" and not self.settings.check_output):
            return
        rule = self._match(text)
        if rule is None:
            return
        entry: dict[str, object] = {
            "request_id": request_id,
            "key_id": key_id,
            "stage": stage,
            "reason": f"blocked_terms[{rule}]",
        }
        if self.hashes:
            entry |= {"text_sha256": hashlib.sha256(text.encode()).hexdigest(), "input_sha256": input_hashes}
        self.audit.append(entry)
        where = "the request" if stage == "input" else "the answer"
        raise SensitiveContentError(f"{where} was refused by the content policy; the refusal was logged")
