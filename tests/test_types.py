"""The package type-checks: mypy with the project's configuration (``[tool.mypy]`` in pyproject.toml,
the pydantic plugin included) finds no error in ``src/vlserve``, and that configuration is the one in
force (a file with a type error and a stale ``type: ignore`` is refused under it).

mypy keeps its incremental cache in the repository's ``.mypy_cache`` (git-ignored): a cold run takes
about a minute on two cores, a warm one seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(CONFIG), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_the_package_has_no_type_errors() -> None:
    done = _mypy()  # the files come from the configuration: src/vlserve
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout


def test_the_configuration_refuses_errors_and_stale_ignores(tmp_path: Path) -> None:
    bad = tmp_path / "bad_types.py"
    bad.write_text(
        "from pydantic import BaseModel, Field\n\n\n"
        "class M(BaseModel):\n"
        "    n = Field(1)\n\n\n"  # only the pydantic plugin reports an untyped field
        "count: int = 'three'\n"
        "fine: int = 3  # type: ignore[assignment]\n\n\n"  # warn_unused_ignores
        "class T(BaseModel):\n"
        "    k: int\n\n\n"
        "T(k='four')\n"  # init_typed: without it the plugin takes any value for a field
    )
    done = _mypy(str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bad_types.py:5: error: Untyped fields disallowed  [pydantic-field]" in done.stdout
    assert "bad_types.py:8: error: Incompatible types in assignment" in done.stdout
    assert 'bad_types.py:9: error: Unused "type: ignore" comment' in done.stdout
    assert 'bad_types.py:16: error: Argument "k" to "T" has incompatible type "str"; expected "int"' in done.stdout
