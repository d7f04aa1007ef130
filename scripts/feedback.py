"""``make feedback STAGE=…``: the votes on the bot's answers, by model and day. Not deployed.

Contract: ``main(argv)`` (``feedback.py STAGE [--days N]``) runs one CloudWatch Logs Insights
query (``QUERY``) over the HTTP function's log group (``/aws/lambda/<app>-<stage>``: the HTTP
function writes the ``"event": "feedback"`` line when a user clicks a feedback button) for the
last ``--days`` days (default 30), and prints one row per UTC day and model: up votes, down
votes and the share of up votes. A user who clicked twice on one answer counts once, with their
last vote (the same rule as the stored item, ``feedback#<channel>:<answer ts>:<user>``); the
day is that last click's. Exit status 0, also when there are no votes (it says so); 2 for a bad
argument or stage; 1, with one line, when AWS cannot be reached or the query fails.

The query names only fields the log line carries (``event``, ``outcome``, plus ``@timestamp``
and ``@message``, whose JSON is read here): ``tests/tools/test_feedback_script.py`` holds it to
``chalicelib.gateway``'s line. Logs Insights returns at most ``LIMIT`` rows; the output says
when that cut the count short.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

LIMIT = 10_000  # Logs Insights' most rows per query
QUERY = f"""fields @timestamp, @message
| filter event = "feedback" and outcome = "dispatched"
| sort @timestamp asc
| limit {LIMIT}"""
POLL_SECONDS = 1.0
QUERY_TIMEOUT_SECONDS = 120.0


def log_group(stage: str) -> str:
    """The HTTP function's log group: Chalice names the function ``{app_name}-{stage}``."""
    return f"/aws/lambda/{common.load_config()['app_name']}-{stage}"


def run_query(
    client: Any, group: str, start: int, end: int, sleep: Callable[[float], None] = time.sleep
) -> list[dict[str, str]]:
    """The query's rows, each as ``{field: value}``; raises ``common.ScriptError`` if it fails."""
    query_id = client.start_query(logGroupName=group, startTime=start, endTime=end, queryString=QUERY)["queryId"]
    waited = 0.0
    while True:
        answer = client.get_query_results(queryId=query_id)
        status = answer.get("status")
        if status == "Complete":
            return [{cell["field"]: cell.get("value", "") for cell in row} for row in answer.get("results", [])]
        if status in ("Failed", "Cancelled", "Timeout", "Unknown"):
            raise common.ScriptError(f"the Logs Insights query ended {status}")
        if waited >= QUERY_TIMEOUT_SECONDS:
            raise common.ScriptError(f"the Logs Insights query did not finish in {QUERY_TIMEOUT_SECONDS:.0f} s")
        sleep(POLL_SECONDS)
        waited += POLL_SECONDS


def votes(rows: Iterable[Mapping[str, str]]) -> dict[tuple[str, str], Counter[str]]:
    """``(day, model) -> Counter(up=…, down=…)``: each voter's last vote on each answer, on its day."""
    last: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}  # voter on answer -> (time, day, model, vote)
    for row in rows:
        try:
            line = json.loads(row.get("@message", ""))
        except ValueError:
            continue  # not one of our JSON lines (Lambda's START/END/REPORT lines)
        if not isinstance(line, dict) or line.get("event") != "feedback" or line.get("outcome") != "dispatched":
            continue
        fields = [line.get(name) for name in ("channel_id", "message_ts", "user_id", "model", "vote")]
        if not all(isinstance(value, str) and value for value in fields) or line["vote"] not in ("up", "down"):
            continue
        stamp = row.get("@timestamp", "")
        key = (line["channel_id"], line["message_ts"], line["user_id"])
        if key not in last or stamp >= last[key][0]:
            last[key] = (stamp, _day(stamp), line["model"], line["vote"])
    table: dict[tuple[str, str], Counter[str]] = {}
    for _, day, model, vote in last.values():
        table.setdefault((day, model), Counter())[vote] += 1
    return table


def _day(stamp: str) -> str:
    """The UTC day of a Logs Insights ``@timestamp`` ("2026-12-07 10:00:00.000") or epoch milliseconds."""
    if stamp.isdigit():
        return datetime.fromtimestamp(int(stamp) / 1000, UTC).strftime("%Y-%m-%d")
    return stamp[:10] or "unknown"


def render(table: Mapping[tuple[str, str], Counter[str]]) -> str:
    if not table:
        return "no votes in this period"
    width = max(len("model"), *(len(model) for _, model in table))
    lines = [f"{'day':<10}  {'model':<{width}}  {'up':>5}  {'down':>5}  {'share up':>8}"]
    for day, model in sorted(table):
        up, down = table[day, model]["up"], table[day, model]["down"]
        lines.append(f"{day:<10}  {model:<{width}}  {up:>5}  {down:>5}  {up / (up + down):>8.0%}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout, client: Any = None) -> int:
    parser = argparse.ArgumentParser(prog="make feedback", description="Votes on the bot's answers, by model and day.")
    parser.add_argument("stage", help="the stage whose HTTP function's logs are read (dev, prod)")
    parser.add_argument("--days", type=int, default=30, help="how many days back (default 30)")
    args = parser.parse_args(argv)
    if args.days < 1:
        return common.error("--days must be at least 1", 2)
    try:
        common.stage_config(args.stage)
    except common.ScriptError as error:
        return common.error(str(error), 2)
    group = log_group(args.stage)
    end = int(time.time())
    try:
        if client is None:
            from check_aws import problem

            missing = problem()
            if missing:
                return common.error(missing)
            import boto3

            client = boto3.client("logs")
        rows = run_query(client, group, end - args.days * 86400, end)
    except common.ScriptError as error:
        return common.error(str(error))
    except Exception as error:  # botocore's errors: one line, never a traceback
        code = getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__
        return common.error(f"could not query {group}: {code}")
    print(f"votes on answers, {args.stage}, last {args.days} days (UTC), from {group}:", file=stdout)
    print(render(votes(rows)), file=stdout)
    if len(rows) >= LIMIT:
        print(f"note: Logs Insights returned its limit of {LIMIT} clicks: older ones are not counted", file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
