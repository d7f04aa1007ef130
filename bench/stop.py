"""The stop button's speed and cost: how soon a stop ends an answer, and what the worker's poll costs.

    .venv/bin/python bench/stop.py            # about a minute
    .venv/bin/python bench/stop.py --quick    # a few seconds' worth, for checking the harness

Contract: it prints a Markdown report and exits 0 (a measurement, not a test); it exits 1 when a
stop does not stop its answer (the numbers would then mean nothing). For each path it runs
``--runs`` mentions whose fake LLM drips a slow answer, lets the answer stream a moment, stops
the thread's streams in the fake Slack as Slack does, and hands the HTTP function the
``agent_session_stopped`` event (``gateway.handle_event``), then measures from that call:

- ``local``: the worker in a thread of this process with the in-memory store, as under
  ``chalice local``;
- ``dynamodb``: the Lambda path (``AWS_LAMBDA_FUNCTION_NAME`` and ``IDEMPOTENCY_TABLE`` set): the
  HTTP function writes the mark in moto's server on 127.0.0.1, and the worker's poll reads it.

Per stop: until the LLM's connection is closed (the fake sees the client hang up: no more
tokens are paid for), until "Stopped." is posted, and any stream write (append, start, update)
the worker made after the event (there should be none). Then one answer of ``--minute`` seconds
runs unstopped on the Lambda path, and its poll's GetItem requests are counted (a botocore hook
on the default session): requests and read units per answer-minute (a strongly consistent read
of an item under 4 KB, or of none, is 1 read unit). Every wait is bounded; the fakes and moto's
server are stopped before it returns. Nothing leaves 127.0.0.1; credentials are fake.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from chalicelib import claims, container, gateway, stops, worker  # noqa: E402
from chalicelib.deadline import Deadline  # noqa: E402
from chalicelib.slack import events  # noqa: E402
from devkit import slack_requests  # noqa: E402
from devkit.fake_openai import StreamReply, fake_openai, split_deltas  # noqa: E402
from devkit.fake_slack_api import FAKE_BOT_TOKEN, FakeSlackAPI  # noqa: E402

SIGNING_SECRET = "bench-fake-signing-secret-not-real"
TABLE = "mameka-bench-claims"
REGION = "us-east-1"
TEXT = "東京の朝は静かで、川沿いの散歩道には桜の木が並んでいます。" * 20
WRITES = ("chat.appendStream", "chat.startStream", "chat.update")


def stop_once(env: dict[str, str], llm: Any, slack: FakeSlackAPI) -> dict[str, float]:
    reply = StreamReply(deltas=split_deltas(TEXT, 100), delay=0.1)
    llm.script = [reply]
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("長い話をして", ts=ts)
    slack.add_event(body)
    job, _ = events.parse(body)
    payload = job.to_payload()  # type: ignore[union-attr]
    running = threading.Thread(target=worker.run, args=(payload, Deadline.in_seconds(60), env))
    running.start()
    appends = len(slack.calls_to("chat.appendStream"))
    slack.wait_for("chat.appendStream", appends + 1, timeout=30)
    listed = slack.stop_session(slack_requests.CHANNEL_ID, ts)
    stop = slack_requests.agent_session_stopped_event(ts, streaming_message_ts=listed)
    headers = {
        k.lower(): v
        for k, v in slack_requests.signed_headers(SIGNING_SECRET, stop, content_type="application/json").items()
    }
    posts = len(slack.calls_to("chat.postMessage"))
    pressed = time.monotonic()
    status, _ = gateway.handle_event(headers, stop, env, "bench")
    if status != 200 or not reply.disconnected.wait(10):
        raise SystemExit(f"the stop did not stop the answer (status {status}, LLM {reply.outcome})")
    slack.wait_for("chat.postMessage", posts + 1, timeout=10)
    running.join(30)
    said = [call for call in slack.calls_to("chat.postMessage")[posts:] if call.params.get("text") == "Stopped."]
    if len(said) != 1 or running.is_alive():
        raise SystemExit("the stop was not confirmed once")
    late = [c for c in slack.calls if c.at > pressed and c.method in WRITES and c.params.get("channel") and c.ok]
    return {
        "closed_ms": ((reply.ended_at or pressed) - pressed) * 1000,
        "stopped_ms": (said[0].at - pressed) * 1000,
        "late_writes": float(len(late)),
    }


def row(name: str, samples: list[dict[str, float]]) -> str:
    def stat(key: str) -> str:
        values = [s[key] for s in samples]
        return f"{statistics.median(values):.0f} / {max(values):.0f}"

    late = sum(int(s["late_writes"]) for s in samples)
    return f"| {name} | {len(samples)} | {stat('closed_ms')} | {stat('stopped_ms')} | {late} |"


def poll_cost(env: dict[str, str], llm: Any, slack: FakeSlackAPI, seconds: float) -> tuple[int, float]:
    """GetItem requests during one unstopped answer of about ``seconds``; and how long it ran."""
    pieces = max(2, int(seconds / 0.1))
    llm.script = [StreamReply(deltas=split_deltas(TEXT, pieces), delay=seconds / pieces)]
    gets = [0]

    def count(**kwargs: Any) -> None:
        gets[0] += 1

    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.GetItem", count)  # type: ignore[union-attr]
    ts = slack_requests.new_ts()
    body = slack_requests.mention_event("長い話をして", ts=ts)
    slack.add_event(body)
    job, _ = events.parse(body)
    started = time.monotonic()
    worker.run(job.to_payload(), Deadline.in_seconds(seconds + 60), env)  # type: ignore[union-attr]
    ran = time.monotonic() - started
    boto3.DEFAULT_SESSION.events.unregister("before-call.dynamodb.GetItem", count)  # type: ignore[union-attr]
    if not gets[0] or ran < seconds / 2:
        raise SystemExit(f"the unstopped answer did not run its course ({ran:.1f} s, {gets[0]} reads)")
    return gets[0], ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--minute", type=float, default=None, help="seconds of the unstopped answer (default 60)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 15)
    minute = args.minute or (5.0 if args.quick else 60.0)
    logging.disable(logging.WARNING)  # the worker's log lines are not the report
    for name in [n for n in os.environ if n.startswith(("AWS_", "OPENAI_", "SLACK_"))]:
        del os.environ[name]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
        boto3.setup_default_session(region_name=REGION)
        client = boto3.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": claims.KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": claims.KEY_ATTRIBUTE, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        # The bot's JSON log lines (stdout) are not the report.
        with (
            fake_openai() as llm,
            FakeSlackAPI() as slack,
            contextlib.redirect_stdout(sys.stderr if os.environ.get("BENCH_STOP_LOGS") else io.StringIO()),
        ):
            local = {
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "OPENAI_API_KEY": "sk-bench-fake",
                "OPENAI_BASE_URL": llm.url + "/v1",
                "SLACK_BOT_TOKEN": FAKE_BOT_TOKEN,
                "SLACK_API_URL": slack.url,
                "LOG_LEVEL": "ERROR",
            }
            in_lambda = {**local, "AWS_LAMBDA_FUNCTION_NAME": "mameka-bench", "IDEMPOTENCY_TABLE": TABLE}
            results: dict[str, list[dict[str, float]]] = {"local": [], "dynamodb": []}
            for _ in range(runs):  # interleaved: machine noise hits both alike
                for name, env in (("local", local), ("dynamodb", in_lambda)):
                    container.reset()
                    results[name].append(stop_once(env, llm, slack))
            container.reset()
            gets, ran = poll_cost(in_lambda, llm, slack, minute)
    finally:
        moto.stop()
    per_minute = gets / ran * 60
    command = " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "## Stop: from Slack's `agent_session_stopped` to the end of the answer",
        "",
        f"`bench/stop.py {command}`; milliseconds from the HTTP function's call, median / max.",
        "",
        '| path | stops | LLM connection closed | "Stopped." posted | stream writes after the event |',
        "| --- | ---: | ---: | ---: | ---: |",
        row("local (in memory)", results["local"]),
        row(f"Lambda (DynamoDB poll every {stops.POLL_SECONDS:g} s, moto)", results["dynamodb"]),
        "",
        f"The poll, over one unstopped answer of {ran:.1f} s: {gets} GetItem (consistent reads, 1 read unit each), "
        f"so {per_minute:.0f} requests and {per_minute:.0f} read units per answer-minute.",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
