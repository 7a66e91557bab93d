"""The documented error table (docs/errors.md) matches the code: codes, classes and statuses."""

from __future__ import annotations

import re
from pathlib import Path

from vlserve import errors
from vlserve.api.errors import status_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(r"^\| (\d+) \| `(\w+)` \| (\d+) \|")


def all_error_classes() -> set[type[errors.VlserveError]]:
    found, todo = set(), [errors.VlserveError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {c for c in found if c.__module__ == "vlserve.errors" and c is not errors.VlserveError
            and c is not errors.MediaError}


def test_table_matches_code() -> None:
    rows = [ROW.match(line) for line in DOC.read_text().splitlines()]
    table = {m.group(2): (int(m.group(1)), int(m.group(3))) for m in rows if m}
    classes = all_error_classes()
    assert set(table) == {c.__name__ for c in classes}
    for cls in classes:
        code, status = table[cls.__name__]
        assert cls.code == code, cls
        assert status_for(cls("x")) == status, cls


def test_codes_are_unique() -> None:
    codes = [c.code for c in all_error_classes()]
    assert len(codes) == len(set(codes))
