"""scripts/feedback.py (``make feedback``): the votes by model and day, from the HTTP function's log lines.

moto's Logs backend runs ``start_query`` / ``get_query_results`` but reads only ``fields``,
``sort`` and ``limit`` (no ``filter``, no JSON fields); so the script reads each line's
``@message`` itself, and the query's own ``filter`` is held here to the fields the gateway's
``feedback`` line carries (Logs Insights has no parser to run offline). The line itself comes
from the real route, so the script and the gateway cannot drift apart.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib import gateway
from devkit import slack_requests
from devkit.fake_response_url import fake_response_url
from tests.conftest import ROOT, SIGNING_SECRET, import_script, wait_for_local_jobs

feedback_script = import_script("feedback")
GROUP = "/aws/lambda/mameka-dev"
LOGS_INSIGHTS_FIELDS = {"@timestamp", "@message"}


def a_feedback_line(capsys: pytest.CaptureFixture[str], vote: str = "up") -> dict[str, Any]:
    """The log line the HTTP function writes for a click (through the real gateway)."""
    with fake_response_url() as thanks:
        body = slack_requests.interaction_form(
            slack_requests.feedback_payload(f"{vote}:gpt-test", "1700000000.000100", thanks.url + "/actions/1")
        )
        headers = {k.lower(): v for k, v in slack_requests.signed_headers(SIGNING_SECRET, body).items()}
        capsys.readouterr()
        status, _ = gateway.handle_interaction(headers, body, {"SLACK_SIGNING_SECRET": SIGNING_SECRET}, "req-1")
        wait_for_local_jobs()
    assert status == 200
    [line] = [json.loads(text) for text in capsys.readouterr().out.splitlines() if '"event":"feedback"' in text]
    return line


def query_fields(query: str) -> set[str]:
    """The fields a Logs Insights query names in its fields, filter and sort commands."""
    named: set[str] = set()
    for command in query.split("|"):
        verb, _, rest = command.strip().partition(" ")
        if verb == "fields":
            named |= {name.strip() for name in rest.split(",")}
        elif verb == "filter":
            named |= set(re.findall(r"(@?\w+)\s*=", rest))
        elif verb == "sort":
            named.add(rest.split()[0])
    return named


def test_the_query_names_only_fields_the_feedback_line_carries(capsys: pytest.CaptureFixture[str]) -> None:
    line = a_feedback_line(capsys)
    assert (line["event"], line["outcome"]) == ("feedback", "dispatched")  # what the filter keeps
    named = query_fields(feedback_script.QUERY)
    assert named == {"@timestamp", "@message", "event", "outcome"}
    assert named <= LOGS_INSIGHTS_FIELDS | set(line)
    # What the script reads from @message is in the line too.
    assert {"channel_id", "message_ts", "user_id", "model", "vote"} <= set(line)
    rows = [{"@timestamp": "2026-12-07 10:00:00.000", "@message": json.dumps(line)}]
    assert feedback_script.votes(rows) == {("2026-12-07", "gpt-test"): {"up": 1}}


def message(vote: str, user: str, answer: str = "1700000000.000100", model: str = "gpt-a", **fields: Any) -> str:
    line = {
        "event": "feedback",
        "outcome": "dispatched",
        "channel_id": "C1",
        "message_ts": answer,
        "user_id": user,
        "model": model,
        "vote": vote,
        **fields,
    }
    return json.dumps(line)


def test_a_result_set_is_counted_once_per_voter_and_answer_and_rendered() -> None:
    rows = [
        {"@timestamp": "2026-12-06 09:00:00.000", "@message": message("up", "U1")},
        {"@timestamp": "2026-12-07 09:00:00.000", "@message": message("down", "U1")},  # U1 changed their mind
        {"@timestamp": "2026-12-07 10:00:00.000", "@message": message("up", "U2")},
        {"@timestamp": "2026-12-07 11:00:00.000", "@message": message("up", "U2", answer="1700000001.000100")},
        {"@timestamp": "2026-12-07 12:00:00.000", "@message": message("down", "U3", model="gpt-b")},
        {"@timestamp": "2026-12-07 12:00:00.000", "@message": message("up", "U4", outcome="denied")},
        {"@timestamp": "2026-12-07 12:00:00.000", "@message": "START RequestId: 1 Version: $LATEST"},
    ]
    table = feedback_script.votes(rows)
    assert table == {("2026-12-07", "gpt-a"): {"up": 2, "down": 1}, ("2026-12-07", "gpt-b"): {"down": 1}}
    assert feedback_script.render(table).splitlines() == [
        "day         model     up   down  share up",
        "2026-12-07  gpt-a      2      1       67%",
        "2026-12-07  gpt-b      0      1        0%",
    ]
    assert feedback_script.render({}) == "no votes in this period"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("logs")


def test_make_feedback_queries_the_http_functions_log_group_in_moto(aws: Any) -> None:
    aws.create_log_group(logGroupName=GROUP)
    aws.create_log_stream(logGroupName=GROUP, logStreamName="s")
    now = int(time.time() * 1000)
    lines = [message("up", "U1"), message("down", "U1"), message("up", "U2"), '{"event":"interaction"}']
    aws.put_log_events(
        logGroupName=GROUP,
        logStreamName="s",
        logEvents=[{"timestamp": now - 1000 * (len(lines) - i), "message": line} for i, line in enumerate(lines)],
    )
    out = io.StringIO()
    assert feedback_script.main(["dev", "--days", "2"], stdout=out) == 0
    day = time.strftime("%Y-%m-%d", time.gmtime(now / 1000 - 4))
    assert out.getvalue().splitlines() == [
        f"votes on answers, dev, last 2 days (UTC), from {GROUP}:",
        "day         model     up   down  share up",
        f"{day}  gpt-a      1      1       50%",
    ]


def test_a_missing_log_group_is_one_line(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert feedback_script.main(["dev"]) == 1
    assert capsys.readouterr().err == f"error: could not query {GROUP}: ResourceNotFoundException\n"


def test_an_unknown_stage_or_bad_days_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert feedback_script.main(["nope"]) == 2
    assert feedback_script.main(["dev", "--days", "0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: stage 'nope' is not in .chalice/config.json (stages: dev, prod)",
        "error: --days must be at least 1",
    ]


def test_without_credentials_it_says_how_to_set_them_in_one_line() -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "feedback.py"), "dev"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "aws configure" in line
