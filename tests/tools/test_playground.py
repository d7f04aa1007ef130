"""scripts/playground.py in process: what ``started`` yields, stops and keeps, with a real ``chalice local``.

The scripts on top of it (demo.py, ask.py without keys) run end to end in test_demo.py and
test_scripts_ask.py; here is what they rely on: the stage, the stop, and the log's fate.
"""

from __future__ import annotations

import io
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import import_script

playground = import_script("playground")


def refused(url: str) -> bool:
    try:
        socket.create_connection(("127.0.0.1", urlsplit(url).port or 0), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("keep", [False, True])
def test_a_stage_runs_until_the_with_is_left_and_its_log_goes_unless_kept(keep: bool) -> None:
    err = io.StringIO()
    model = playground.parse_model({})

    with playground.started(model, {"PATH": "/usr/bin:/bin"}, err) as stage:
        assert not refused(stage.url) and not refused(stage.slack.url)
        assert stage.stand_in is not None and not refused(stage.stand_in.url)
        assert stage.model == model
        assert stage.bot_token.startswith(playground.BOT_TOKEN_PREFIX)
        assert stage.secret not in repr(stage) and stage.bot_token not in repr(stage)
        assert stage.log.is_file()
        if keep:
            assert stage.keep_log() == stage.log

    assert refused(stage.url) and refused(stage.slack.url) and refused(stage.stand_in.url)
    assert stage.log.is_file() is keep
    assert f"chalice local on {stage.url}…" in err.getvalue() and "the bot is listening" in err.getvalue()
    assert stage.secret not in err.getvalue()
    shutil.rmtree(stage.log.parent, ignore_errors=True)


def test_a_bot_that_does_not_start_is_named_with_its_kept_log(monkeypatch: pytest.MonkeyPatch) -> None:
    false = shutil.which("false")
    assert false is not None
    monkeypatch.setattr(playground, "chalice_command", lambda: false)  # exits 1 at once, listening nowhere

    with (
        pytest.raises(playground.StartFailed) as failed,
        playground.started(playground.parse_model({}), {}, io.StringIO()),
    ):
        pytest.fail("the stage should not be yielded")

    message = str(failed.value)
    assert message.startswith("chalice local exited (1) before it listened; the bot's log: ")
    log = Path(message.rsplit("the bot's log: ", 1)[1])
    assert log.is_file()
    shutil.rmtree(log.parent)
