"""The container registry: ``container.reset()`` forgets every per-container cache, and none is left out.

Each cache is filled through its module's own functions and found empty after ``reset()``.
Where a cache has no public way to be seen (the refused-parameter memory, the settings memo),
the test looks at it directly: this is the registry's own test.
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import pkgutil
from pathlib import Path

import pytest
from moto import mock_aws

import chalicelib
from chalicelib import aws, claims, container, dispatch, feedback, gateway, limits, llm, logs, secrets, session, stops
from chalicelib.settings import Settings, _from_values
from chalicelib.slack import mrkdwn

CHALICELIB = Path(chalicelib.__file__).parent

# Every registered cache, each filled and checked below: a new one must be added to both.
CHECKED = {
    "chalicelib.settings._from_values",
    "chalicelib.aws.client",
    "chalicelib.aws.quick_client",
    "chalicelib.llm._client",
    "chalicelib.llm.reset_rejected_parameters",
    "chalicelib.secrets._forget_parameters",
    "chalicelib.claims._forget_store",
    "chalicelib.stops._forget_store",
    "chalicelib.limits._forget_counts",
    "chalicelib.dispatch.local_worker_timeout",
    "chalicelib.slack.mrkdwn._patterns",
    "chalicelib.logs._forget_level",
    "chalicelib.feedback._forget_votes",
    "chalicelib.gateway._forget_recent_opens",
    "chalicelib.session._forget_unavailable",
}


def all_modules() -> list[str]:
    """Every module under chalicelib, imported (so that every cache has registered)."""
    names = [info.name for info in pkgutil.walk_packages([str(CHALICELIB)], "chalicelib.")]
    for name in names:
        importlib.import_module(name)
    return names


def test_every_registered_cache_is_checked_here() -> None:
    all_modules()
    assert set(container.registered()) == CHECKED


def test_reset_empties_every_registered_cache(request: pytest.FixtureRequest) -> None:
    all_modules()
    lru_caches = [
        _from_values,
        aws.client,
        aws.quick_client,
        llm._client,
        dispatch.local_worker_timeout,
        mrkdwn._patterns,
    ]
    Settings.from_env({"OPENAI_MODEL": "gpt-x"})
    aws.client("ssm")
    aws.quick_client("dynamodb")
    llm._client("sk-not-a-key", "http://127.0.0.1:9/v1")
    dispatch.local_worker_timeout()
    mrkdwn.to_mrkdwn("**bold**")
    assert all(cache.cache_info().currsize > 0 for cache in lru_caches)
    llm._remember_rejected(("http://127.0.0.1:9/v1", "gpt-x"), frozenset({"temperature"}))
    assert llm._rejected

    assert claims.store().claim(["job-1"]) is True
    assert claims.store().claim(["job-1"]) is False
    stops.store(None).record("C1", "1.000100", "1.000200")  # a stop mark, kept for its answer
    assert gateway._recent_opens.claim(["prompts-open:T1:U1"]) is True
    assert gateway._recent_opens.claim(["prompts-open:T1:U1"]) is False
    session._remember_unavailable("feature_disabled")
    assert session.Session("D1", "1.000100").path == "assistant"
    limited = Settings(user_rate_limit_per_minute=1)
    assert limits.check(limited, "T1", "U1", now=60.0) is None
    assert limits.check(limited, "T1", "U1", now=60.0) is not None  # over the limit in this minute
    feedback._memory.put("feedback#C1:1.2:U1", "up")
    assert feedback.stored_vote("feedback#C1:1.2:U1") == "up"

    root = logging.getLogger()
    original_level = root.level
    request.addfinalizer(lambda: root.setLevel(original_level))
    logs.configure("INFO")
    root.setLevel(logging.WARNING)
    logs.configure("INFO")  # remembered: not applied again
    assert root.level == logging.WARNING

    with mock_aws():
        import boto3

        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/t/token", Value="xoxb-old-value-1", Type="SecureString")
        settings = Settings(slack_bot_token_parameter="/t/token")
        assert secrets.slack_bot_token(settings) == "xoxb-old-value-1"
        ssm.put_parameter(Name="/t/token", Value="xoxb-new-value-2", Type="SecureString", Overwrite=True)
        assert secrets.slack_bot_token(settings) == "xoxb-old-value-1"  # kept for SECRETS_TTL_SECONDS

        container.reset()

        assert all(cache.cache_info().currsize == 0 for cache in lru_caches)
        assert secrets.slack_bot_token(settings) == "xoxb-new-value-2"
    assert not llm._rejected
    assert claims.store().claim(["job-1"]) is True
    with stops.store(None).watching("C1", "1.000100", "1.000100") as signal:
        assert not signal.is_set()  # the mark went with the container
    assert gateway._recent_opens.claim(["prompts-open:T1:U1"]) is True
    assert session.Session("D1", "1.000100").path == "agent"
    assert limits.check(limited, "T1", "U1", now=60.0) is None
    assert feedback.stored_vote("feedback#C1:1.2:U1") is None
    logs.configure("INFO")
    assert root.level == logging.INFO


# --- no cache outside the registry -----------------------------------------------------------------------------------

CACHE_DECORATORS = frozenset({"cache", "lru_cache"})


def unregistered_cache_uses(source: str) -> list[str]:
    """Where ``source`` uses ``functools.cache`` or ``lru_cache`` (by any import), as ``line: text``."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "functools":
            found += [
                f"{node.lineno}: from functools import {a.name}" for a in node.names if a.name in CACHE_DECORATORS
            ]
        elif isinstance(node, ast.Attribute) and node.attr in CACHE_DECORATORS:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_caches_outside_the_registry() -> None:
    """``functools.cache``/``lru_cache`` anywhere in chalicelib but container.py is a cache that
    ``container.reset()`` (and so every test's new container) would not forget: use
    ``container.cached()``."""
    found = {
        str(path.relative_to(CHALICELIB)): uses
        for path in sorted(CHALICELIB.rglob("*.py"))
        if path.name != "container.py" and (uses := unregistered_cache_uses(path.read_text()))
    }
    assert found == {}


def test_every_module_level_cache_is_registered() -> None:
    registered = set(container.registered())
    found = [
        f"{name}.{attribute}"
        for name in all_modules()
        for attribute, value in vars(importlib.import_module(name)).items()
        if isinstance(value, functools._lru_cache_wrapper) and value.__module__ == name
    ]
    assert found and set(found) <= registered, set(found) - registered


def test_the_checks_find_what_they_forbid() -> None:
    source = "import functools\nfrom functools import lru_cache\n@functools.cache\ndef f(): ...\n"
    assert unregistered_cache_uses(source) == ["2: from functools import lru_cache", "3: functools.cache"]
