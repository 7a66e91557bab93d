"""The artifact directory shared by several gateway replicas: two replicas purging it at the same
time (real threads, a real directory) both finish, and between them remove every expired request
exactly once; ownership records are complete files whoever wrote them."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from vlserve.service.artifacts import OWNER_FILE, PurgeReport, artifact_path, purge_artifacts, record_owner


def make_requests(root: Path, n: int, *, age: float) -> None:
    old = time.time() - age
    for i in range(n):
        directory = root / f"req_{i}"
        (directory / "deep").mkdir(parents=True)
        (directory / "model.stl").write_bytes(b"x" * 100)
        (directory / "deep" / "part.obj").write_bytes(b"y" * 50)
        record_owner(directory, "alice")
        os.utime(directory, (old, old))


def test_two_replicas_purging_at_once_remove_each_expired_request_once(tmp_path: Path) -> None:
    make_requests(tmp_path, 300, age=3600)
    (tmp_path / "req_fresh").mkdir()
    expected_bytes = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    reports: list[PurgeReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def replica() -> None:
        start.wait()
        try:
            reports.append(purge_artifacts(tmp_path, max_age=60, max_bytes=0))
        except BaseException as err:  # noqa: BLE001 - the test reports it below
            errors.append(err)

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert [p.name for p in tmp_path.iterdir()] == ["req_fresh"]
    assert sum(r.removed for r in reports) == 300  # each by the replica that took it
    assert sum(r.freed_bytes for r in reports) == expected_bytes


def test_owner_records_are_whole_and_leave_no_temporary_files(tmp_path: Path) -> None:
    directory = tmp_path / "req_1"
    directory.mkdir()
    (directory / "a.stl").write_bytes(b"solid")
    threads = [threading.Thread(target=record_owner, args=(directory, "alice")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in directory.iterdir()) == [OWNER_FILE, "a.stl"]
    assert artifact_path(tmp_path, "req_1", "a.stl", "alice") == (directory / "a.stl").resolve()
