"""Only the entry points read the environment; everything below them takes ``Settings``.

The entry points (``ENTRY_POINTS``) parse settings once per handler call and pass a frozen
``Settings`` down. Every other module under chalicelib/ is checked, by its syntax tree, for:

- ``os.environ`` / ``os.getenv`` (any ``.environ``, ``.environb``, ``.getenv`` attribute, or
  those names imported from ``os``);
- a parameter named ``environ``;
- parsing settings itself (``Settings.from_env`` or ``Settings.reach_from_env``);
- reading any name that contains "environ": such a name may only be handed on whole, as a
  call's argument. That is how ``dispatch`` passes the request's environment, unread, to the
  local worker thread (``worker.run`` parses it, as a Lambda parses its configuration).

Strings and docstrings may mention the environment: only code is checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import chalicelib

CHALICELIB = Path(chalicelib.__file__).parent
ENTRY_POINTS = frozenset({"gateway.py", "worker.py", "chalice_local.py", "settings.py"})
ENVIRONMENT_ATTRIBUTES = frozenset({"environ", "environb", "getenv", "putenv", "unsetenv"})
PARSERS = frozenset({"from_env", "reach_from_env"})


def environment_reads(source: str) -> list[str]:
    """What in ``source`` reads the environment or parses settings, as ``line: code``."""
    tree = ast.parse(source)
    handed_on = {
        id(argument)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for argument in node.args
        if isinstance(argument, ast.Name)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_ATTRIBUTES | PARSERS:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            names = [alias.name for alias in node.names if alias.name in ENVIRONMENT_ATTRIBUTES]
            found += [f"{node.lineno}: from os import {name}" for name in names]
        elif isinstance(node, ast.arg) and node.arg == "environ":
            found.append(f"{node.lineno}: parameter environ")
        elif isinstance(node, ast.Name) and "environ" in node.id and id(node) not in handed_on:
            found.append(f"{node.lineno}: {node.id} read")
    return sorted(found, key=lambda line: int(line.split(":")[0]))


def test_only_the_entry_points_read_the_environment() -> None:
    found = {
        str(path.relative_to(CHALICELIB)): reads
        for path in sorted(CHALICELIB.rglob("*.py"))
        if str(path.relative_to(CHALICELIB)) not in ENTRY_POINTS and (reads := environment_reads(path.read_text()))
    }
    assert found == {}, "below the entry points, take Settings (chalicelib.settings) instead"


def test_the_check_finds_what_it_forbids() -> None:
    source = """
import os
from os import getenv

def f(environ, snapshot_environ):
    os.environ.get("X")
    Settings.from_env({})
    g(snapshot_environ)  # handed on whole: allowed
    return snapshot_environ["X"]
"""
    assert environment_reads(source) == [
        "3: from os import getenv",
        "5: parameter environ",
        "6: os.environ",
        "7: Settings.from_env",
        "9: snapshot_environ read",
    ]


def test_the_entry_points_exist() -> None:
    # A renamed entry point would otherwise leave its new name unchecked and the old one excused.
    assert all((CHALICELIB / name).is_file() for name in ENTRY_POINTS)
