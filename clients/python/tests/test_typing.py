"""The package is typed: it ships py.typed, and mypy --strict (the
settings of pyproject.toml) passes on it and on these tests, which use its
API as an application would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import PYTHON, SRC

ROOT = SRC.parent
TESTS = ROOT / "tests"


def mypy(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", "/dev/null", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": f"{SRC}:{TESTS}"},
        timeout=300,
    )


def test_py_typed_is_shipped() -> None:
    assert (SRC / "deliver" / "py.typed").is_file()
    assert 'deliver = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def test_mypy_strict_passes_on_the_package_and_the_tests() -> None:
    r = mypy(SRC / "deliver", *sorted(TESTS.glob("*.py")), *sorted((TESTS / "fixtures").glob("*.py")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("Success: no issues found"), r.stdout
