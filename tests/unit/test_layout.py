"""The README's layout section is the module index: complete, and naming only files that exist.

Every Python module (and script) under chalicelib/, scripts/, devkit/ and bench/, and the
tests' shared helpers, must be named in the fenced block after "Layout" in README.md, by its
file name; every ``name.py`` the block names must exist. A new module without its line, or a
line left behind by a removed one, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

INDEXED = ("chalicelib", "scripts", "devkit", "bench")
TEST_HELPERS = ("conftest.py", "chalice_local.py", "load_client.py", "moto_server.py")


def layout_block(readme: str) -> str:
    match = re.search(r"^Layout[^\n]*\n(?:[^\n]+\n)*?\n```\n(.*?)^```", readme, re.S | re.M)
    assert match, "README.md has no fenced block after its 'Layout' line"
    return match.group(1)


def indexed_files() -> set[Path]:
    files = {
        path.relative_to(ROOT)
        for folder in INDEXED
        for path in (ROOT / folder).rglob("*")
        if path.suffix in (".py", ".sh") and path.name != "__init__.py" and "__pycache__" not in path.parts
    }
    return files | {Path("app.py")} | {Path("tests", name) for name in TEST_HELPERS}


def test_every_module_has_its_line_in_the_layout() -> None:
    block = layout_block((ROOT / "README.md").read_text())
    named = set(re.findall(r"[\w-]+\.(?:py|sh)\b", block))
    missing = sorted(str(path) for path in indexed_files() if path.name not in named)
    assert not missing, f"README.md's layout does not name: {', '.join(missing)}"


def test_every_file_the_layout_names_exists() -> None:
    block = layout_block((ROOT / "README.md").read_text())
    existing = {path.name for path in indexed_files()}
    stale = sorted(set(re.findall(r"[\w-]+\.(?:py|sh)\b", block)) - existing)
    assert not stale, f"README.md's layout names files that do not exist: {', '.join(stale)}"


def test_the_layout_block_is_found_and_checked() -> None:
    # The two checks above would pass on an empty block: make sure they read the real one.
    block = layout_block((ROOT / "README.md").read_text())
    assert "chalicelib/gateway.py" in block and len(indexed_files()) > 40
