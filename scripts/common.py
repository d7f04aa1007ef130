"""What the scripts share: the root, the Chalice config and stages, our routes, loopback, errors. Not deployed.

Contract:

- Importing it puts the repository root first on ``sys.path`` (for ``chalicelib`` and
  ``devkit``). scripts/ is not a package: each script first puts its own directory on
  ``sys.path`` and then imports ``common``, so that ``python scripts/x.py`` and a test's
  ``tests.conftest.import_script("x")`` import alike.
- ``load_config()`` is ``.chalice/config.json``; ``stage_config(stage, config)`` is one stage's
  part of it, or ``UnknownStage`` (a ``ScriptError``) whose message is the one line to show:
  ``stage 'x' is not in .chalice/config.json (stages: dev, prod)``.
- ``function_environment(config, stage, function)``: the variables a deployed function gets,
  merged by Chalice's own ``Config`` (the top level, the stage, the stage's function).
- ``route_url(url, route)``: the URL of one of our routes (``COMMAND_PATH``, ``EVENTS_PATH``,
  ``INTERACTIONS_PATH``) for a base URL or for any route's URL (a trailing slash dropped, a query kept).
- ``is_loopback(url)``: the URL's host is this machine (``localhost``, ``*.localhost``, or a
  loopback address such as ``127.0.0.1`` or ``[::1]``); a name that only starts like one
  (``127.0.0.1.example.com``) is not.
- ``chalice_command()``: the project's chalice (the venv's), else the one beside this Python,
  else one on PATH; ``ScriptError`` ("chalice is not installed: run `make venv` first") if none.
- ``UsageError`` (a ``ScriptError``): a setting or argument is wrong, which a script reports
  with exit status 2.
- ``error(message, status=1)`` prints ``error: message`` on stderr and returns ``status``, for
  a script's ``return``. Errors are one line, never a traceback.

Standard library only when imported (``function_environment`` imports Chalice when called).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIG_PATH = ROOT / ".chalice" / "config.json"
COMMAND_PATH = "slack/commands"  # the routes in app.py
EVENTS_PATH = "slack/events"
INTERACTIONS_PATH = "slack/interactions"  # button clicks (block_actions)
ROUTES = (COMMAND_PATH, EVENTS_PATH, INTERACTIONS_PATH)


class ScriptError(Exception):
    """Something stops a script; ``str(error)`` is the one line to show."""


class UnknownStage(ScriptError):
    pass


class UsageError(ScriptError):
    """A setting or argument is wrong; ``str(error)`` says which and how to fix it (exit status 2)."""


def load_config() -> dict[str, Any]:
    return json.loads(CONFIG_PATH.read_text())


def stage_config(stage: str, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    stages = (load_config() if config is None else config).get("stages", {})
    if stage not in stages:
        raise UnknownStage(f"stage {stage!r} is not in .chalice/config.json (stages: {', '.join(stages)})")
    return stages[stage]


def function_environment(config: Mapping[str, Any], stage: str, function: str) -> dict[str, str]:
    from chalice.config import Config

    return Config(chalice_stage=stage, function_name=function, config_from_disk=dict(config)).environment_variables


def route_url(url: str, route: str) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for known in ROUTES:
        if path.endswith("/" + known):
            path = path[: -len(known) - 1]
            break
    return urlunsplit(parts._replace(path=f"{path}/{route}"))


def chalice_command() -> str:
    for candidate in (ROOT / ".venv" / "bin" / "chalice", Path(sys.executable).parent / "chalice"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("chalice")
    if not found:
        raise ScriptError("chalice is not installed: run `make venv` first")
    return found


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error(message: str, status: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status
