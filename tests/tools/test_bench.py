"""`bench/run.py --quick`: the benchmark runs every section to the end, so that it cannot rot unnoticed.

Its smallest run (about two minutes on 2 cores) measures every section: the three HTTP
functions warm and cold, both of our routes, the worker's own time, the streamed answers
(``bench/stream.py --quick`` as its child) and the deployed package's cold starts, against
devkit's fakes in their own process. The numbers depend on the machine and its load, so only
what must hold on any machine is checked: it exits 0 (it exits 1 when a system fails its
job), every section's table is in the report with the sample counts of the quick plan, and
the long streamed answers arrive whole.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

QUICK_WARM_REQUESTS = 40 * 10  # bench/run.py's QUICK plan: rounds x batch
QUICK_WORKER_JOBS = 40


@pytest.mark.timeout(1200)
def test_the_quick_benchmark_runs_every_section_and_reports_it(tmp_path: Path) -> None:
    output = tmp_path / "bench.md"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--seed", "1", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-5000:]
    report = result.stdout
    assert report == output.read_text() + "\n"  # the report, printed and written
    for section in ("warm", "cold", "worker", "stream", "package"):
        assert f"[bench] {section} done in" in result.stderr
    for heading in (
        "## HTTP function, warm: one handler call per request",
        "## HTTP function, cold: a fresh process imports the app and handles one event",
        "## Our HTTP function on both routes: slash command and Events API",
        "## Goals",
        "## Worker: its own time per job, the fake LLM's and Slack's time taken out",
        "## Streamed answers",
        "## Deployed package: cold start as Lambda runs it",
    ):
        assert heading in report
    for system in ("ours", "ours-events", "bare", "bolt"):
        assert re.search(rf"^\| {re.escape(system)} \| {QUICK_WARM_REQUESTS} \| \d+ \|", report, re.M), system
        # The fake Lambda saw every invoke of the measured rounds (the run fails otherwise).
        assert re.search(rf"^\| {re.escape(system)} \| bench-[\w-]+ \| {QUICK_WARM_REQUESTS} \| \d+ \|", report, re.M)
    assert f"for {QUICK_WORKER_JOBS} jobs after" in report
    assert re.search(r"^\| \*\*worker overhead\*\* \| -?\d+\.\d\d \|", report, re.M)
    assert "| long answers arrive whole | PASS |" in report
    assert re.search(r"^\| as shipped \(\.py only\) \| \d+\.\d\d \|", report, re.M)
    assert re.search(r"^\| \+ bytecode \(unchecked-hash\) \| \d+\.\d\d \|", report, re.M)


@pytest.mark.timeout(300)
def test_the_stop_benchmark_stops_every_answer_and_reports_it() -> None:
    """``bench/stop.py --quick``: each stop ends its answer (it exits 1 otherwise), with no stream
    write after the event, and the poll's cost is reported."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "stop.py"), "--quick", "--runs", "2", "--minute", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = result.stdout
    assert report.startswith("## Stop: from Slack's `agent_session_stopped`")
    assert re.search(r"^\| local \(in memory\) \| 2 \| \d+ / \d+ \| \d+ / \d+ \| 0 \|$", report, re.M), report
    assert re.search(
        r"^\| Lambda \(DynamoDB poll every 1 s, moto\) \| 2 \| \d+ / \d+ \| \d+ / \d+ \| 0 \|$", report, re.M
    )
    assert re.search(r"\d+ GetItem \(consistent reads, 1 read unit each\)", report)
