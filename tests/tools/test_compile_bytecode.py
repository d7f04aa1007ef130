"""scripts/compile_bytecode.py: a deployment zip gains bytecode that a read-only Lambda tree uses."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "compile_bytecode.py"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"


def make_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(zipfile.ZipInfo("app.py", (1980, 1, 1, 0, 0, 0)), "import pkg.mod\nVALUE = pkg.mod.VALUE\n")
        archive.writestr(zipfile.ZipInfo("pkg/__init__.py", (1980, 1, 1, 0, 0, 0)), "")
        archive.writestr(zipfile.ZipInfo("pkg/mod.py", (1980, 1, 1, 0, 0, 0)), "VALUE = 42\n")
        archive.writestr("pkg/__pycache__/mod.cpython-39.pyc", b"stale bytecode from a developer's machine")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_bytecode_is_added_and_used_without_compiling(tmp_path: Path) -> None:
    archive = tmp_path / "deployment.zip"
    make_zip(archive)
    result = run_script("--runtime", RUNTIME, str(archive))
    assert result.returncode == 0, result.stderr
    assert "added 3 .pyc" in result.stdout

    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        tree = tmp_path / "task"
        zipped.extractall(tree)
    tag = sys.implementation.cache_tag
    assert f"pkg/__pycache__/mod.{tag}.pyc" in names
    assert "pkg/__pycache__/mod.cpython-39.pyc" not in names  # stale bytecode is dropped

    # As Lambda runs it: a tree Python may not write to. -v says where each module's code came from.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    imported = subprocess.run(
        [sys.executable, "-v", "-c", "import app; print(app.VALUE)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.stdout.strip() == "42"
    assert f"code object from '{tree}/pkg/__pycache__/mod.{tag}.pyc'" in imported.stderr
    assert f"code object from '{tree}/pkg/mod.py'" not in imported.stderr


def test_a_second_run_leaves_the_zip_alone(tmp_path: Path) -> None:
    archive = tmp_path / "deployment.zip"
    make_zip(archive)
    run_script("--runtime", RUNTIME, str(archive))
    before = archive.read_bytes()
    assert "already done" in run_script("--runtime", RUNTIME, str(archive)).stdout
    assert archive.read_bytes() == before


def test_a_zip_for_another_python_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "deployment.zip"
    make_zip(archive)
    result = run_script("--runtime", "python3.9", str(archive))
    assert result.returncode == 2
    assert "its bytecode would be ignored" in result.stderr
