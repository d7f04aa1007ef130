"""The JSON log line: one line per call, every field, any text."""

from __future__ import annotations

import json

from chalicelib import logs


def test_one_json_line_per_call_with_every_field(capsys) -> None:
    logs.emit("command", request_id="r1", team_id=None, status=200, ack_ms=0.25, text='東京 "quoted"\nnext')
    logs.emit("command", outcome="ssl_check")
    first, second = capsys.readouterr().out.splitlines()
    assert json.loads(first) == {
        "event": "command",
        "request_id": "r1",
        "team_id": None,
        "status": 200,
        "ack_ms": 0.25,
        "text": '東京 "quoted"\nnext',
    }
    assert "東京" in first  # readable in CloudWatch, not \u escapes
    assert first.startswith('{"event":"command","request_id":"r1",')  # compact, in the order given
    assert json.loads(second) == {"event": "command", "outcome": "ssl_check"}


def test_a_lone_surrogate_is_replaced_not_raised(capsys) -> None:
    logs.emit("answer", model="gpt\ud83d")
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"event": "answer", "model": "gpt?"}
