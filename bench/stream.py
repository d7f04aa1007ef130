"""The streamed answer's benchmark: how soon Slack shows a sign of life and the first text, and how many calls.

    .venv/bin/python bench/stream.py            # the full run, about 2.5 minutes
    .venv/bin/python bench/stream.py --quick    # a short run, for checking the harness

``make bench`` runs it too, as the ``stream`` section of ``bench/run.py``.

Contract: in this one process, warm (after a few unmeasured jobs), it runs message jobs one
at a time through ``chalicelib.worker.run(payload, Deadline, environ)``, as the worker Lambda
does: top-level mentions of the bot in a channel, each with a unique event id and message
``ts``. The LLM is ``devkit.fake_openai``'s ``paced_llm`` in a process of its own
(``python -m devkit.serve openai-paced``: an OpenAI-compatible server streaming at a realistic
pace: first text after 300-500 ms, then a few characters every ~30 ms); Slack is
``devkit``'s ``FakeSlackAPI`` in this process, which timestamps every call on the monotonic
clock both processes share. Everything is on 127.0.0.1; keys and tokens are
fakes. It measures, per answer:

- job to first sign: from handing the job to the worker to the first Slack call a user
  would see (``agents.sessions.setStatus``, or the first ``chat.startStream`` or
  ``chat.postMessage`` if the status was refused): goal under 1 s;
- first token to Slack: from the LLM server writing its first text delta to the fake Slack
  receiving the call that carries it: goal under 300 ms;
- Slack calls per answer, by method, for a short (~300 characters) and a long (30,000
  characters) answer, and whether the long one arrives whole: the bot's messages in the
  thread, joined, with the fence lines added at cuts removed, must be exactly what the LLM
  sent;
- the same first sign when ``setStatus`` is refused (a few answers), and with a cold worker:
  a fresh process per job (``bench/child.py cold``: ``import app``, then its worker
  handler, bytecode cached), timed from the start of the import.

It prints a Markdown report, writes it to ``bench/results/stream.md`` (``--output`` to change
that, ``--output -`` for none), and exits 0 whether or not the goals are met; it exits 1 if an
answer fails (its numbers would mean nothing). Every wait is bounded: each job has the worker
Lambda's 120 s deadline, and the LLM server process is stopped before it returns.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The repository first on the path (replacing bench/, whose modules must not shadow anything).
sys.path[0] = str(ROOT)

from devkit.fake_slack_api import FAKE_BOT_TOKEN, Call, FakeSlackAPI  # noqa: E402
from devkit.serve import Served, ServeError  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "stream.md"
CHILD = ROOT / "bench" / "child.py"
PYTHON = sys.executable
WORKER_TIMEOUT_SECONDS = 120.0  # the worker Lambda's lambda_timeout
TEAM_ID = "T0BENCH01"
CHANNEL_ID = "C0BENCH01"
USER_ID = "U0BENCH01"
BOT_USER_ID = "UBOT0001"  # FakeSlackAPI's default bot user
QUESTIONS = (
    "東京でおすすめの散歩道は？",
    "How do I keep a Lambda function warm and cheap?",
    "今日の夕飯、何にしよう？ 冷蔵庫には卵と玉ねぎとトマトがある",
    "Explain the difference between SQS and SNS in one paragraph.",
)
FIRST_SIGN_METHODS = ("agents.sessions.setStatus", "chat.startStream", "chat.postMessage")
TEXT_METHODS = ("chat.startStream", "chat.postMessage")
METHODS_SHOWN = (
    "agents.sessions.setStatus",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
    "chat.postMessage",
    "chat.update",
    "conversations.replies",
)
FIRST_SIGN_GOAL_MS = 1000.0
FIRST_TOKEN_GOAL_MS = 300.0
_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}|~{3,})[^\n]*\n")
_FENCE_CLOSE = re.compile(r"\n?[ \t]*(`{3,}|~{3,})[ \t]*$")


@dataclass(frozen=True)
class Pace:
    """How the fake LLM streams: ms to the first text (None: 300-500), ms between deltas, mean characters a delta."""

    first_ms: int | None
    every_ms: int
    delta_chars: int

    def tag(self) -> str:
        first = "" if self.first_ms is None else f" first={self.first_ms}"
        return f"every={self.every_ms} delta={self.delta_chars}{first}"


REALISTIC = Pace(None, 30, 4)  # ~130 characters a second, like a chat model's tokens
FAST_WARMUP = Pace(20, 5, 20)


@dataclass(frozen=True)
class Plan:
    warmup: int
    short: int
    long: int
    no_status: int
    cold: int
    long_pace: Pace


# The long answer streams faster than the short one (a fast model, ~1,000 characters a second):
# at the short one's pace 30,000 characters take about 4 minutes, past OPENAI_TIMEOUT_SECONDS
# (60 s) and the worker's 120 s. Its number of appends follows its duration (one per 2 s).
FULL = Plan(warmup=3, short=20, long=2, no_status=3, cold=5, long_pace=Pace(None, 30, 32))
QUICK = Plan(warmup=2, short=4, long=1, no_status=1, cold=2, long_pace=Pace(None, 20, 64))
SHORT_CHARS = 300
LONG_CHARS = 30_000


class BenchError(RuntimeError):
    """The worker or the harness failed; the numbers would mean nothing."""


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# ---------------------------------------------------------------- the fake LLM's process


class LLMServer(Served):
    """``devkit.fake_openai.paced_llm`` in its own process (``python -m devkit.serve openai-paced``)."""

    def __init__(self) -> None:
        super().__init__("openai-paced", python=PYTHON)
        self.url = self.urls["openai-paced"]

    def sent(self) -> list[dict[str, Any]]:
        """The streams served since the last call: ``devkit.http_fake``'s records, with the stream's
        ``text``, ``first_text``, ``first_text_at`` and ``ended_at``."""
        return [request for request in self.stats("openai-paced", reset=True)["requests"] if "text" in request]


# ---------------------------------------------------------------- one answer


@dataclass
class Answer:
    kind: str  # "warmup", "short", "long", "no_status", "cold"
    chars: int
    outcome: str
    seconds: float
    first_sign_ms: float
    first_sign_method: str
    token_to_slack_ms: float
    job_to_text_ms: float
    calls: Counter[str]
    failed_calls: int
    messages: int
    whole: bool
    mismatch: str
    fence_cuts: int  # cuts inside a code block: the fence closed in one message and reopened in the next
    stream_seconds: float
    log: dict[str, Any] = field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


# Runs one job payload in the worker; returns when the job reached it (time.monotonic()) and its log line.
Executor = Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]


def warm_executor(environ: dict[str, str]) -> Executor:
    """Jobs run in this process, already warm: ``chalicelib.worker.run`` as the worker handler calls it."""
    from chalicelib import worker
    from chalicelib.deadline import Deadline

    def execute(payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        logs = io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(logs):  # the worker's JSON log lines
            worker.run(payload, Deadline.in_seconds(WORKER_TIMEOUT_SECONDS), environ)
        return started, _answer_log(logs.getvalue())

    return execute


def cold_executor(environ: dict[str, str], home: Path, pycache: Path) -> Executor:
    """Each job in a fresh process (``bench/child.py cold``): import ``app``, then its worker handler.

    The job reaches the worker when the import starts, as on a Lambda cold start once the
    runtime is up. Bytecode is cached (``pycache``), as the deployed package ships it. The
    child's stdout, where the worker logs, is not read: there is no log line.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # empty: no ~/.aws files to read
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "AKIDBENCHFAKE0000000",
        "AWS_SECRET_ACCESS_KEY": "bench-fake-secret-access-key",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "bench-stream-worker",
        "PYTHONPYCACHEPREFIX": str(pycache),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **environ,
    }
    args = [PYTHON, str(CHILD), "cold", "--app-dir", str(ROOT), "--module", "app"]
    args += ["--function-name", "bench-stream-worker", "--kind", "worker"]

    def execute(payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        try:
            done = subprocess.run(
                args, input=json.dumps(payload), capture_output=True, text=True, env=env, cwd=ROOT, timeout=180
            )
        except subprocess.TimeoutExpired:
            raise BenchError("a cold worker took over 180 s") from None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise BenchError(f"a cold worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(lines[-1])["import_started_at"], {}

    return execute


def run_answer(
    execute: Executor,
    slack: FakeSlackAPI,
    llm: LLMServer,
    kind: str,
    chars: int,
    pace: Pace,
    seed: int,
    refuse_status: bool = False,
) -> Answer:
    question = QUESTIONS[seed % len(QUESTIONS)]
    text = f"<@{BOT_USER_ID}> [bench chars={chars} seed={seed} {pace.tag()}] {question}"
    ts = slack.add_message(CHANNEL_ID, text, user=USER_ID)  # the mention, as the user posted it
    payload = {
        "kind": "message",
        "id": "Ev" + uuid.uuid4().hex[:10].upper(),
        "asked_at": time.time(),
        "team_id": TEAM_ID,
        "channel_id": CHANNEL_ID,
        "user_id": USER_ID,
        "text": text,
        "ts": ts,
        "thread_ts": None,
        "bot_user_id": BOT_USER_ID,
    }
    if refuse_status:
        slack.fail_next("agents.sessions.setStatus", "not_allowed_token_type")
    first_call = len(slack.calls)
    started, log = execute(payload)
    seconds = time.monotonic() - started
    calls = slack.calls[first_call:]
    streams = llm.sent()
    # A cold worker's log is not read: the checks below (one stream, all of it shown) stand for it.
    if (log and log.get("outcome") != "answered") or len(streams) != 1 or streams[0].get("outcome") != "done":
        raise BenchError(
            f"{kind} answer (seed {seed}): outcome {log.get('outcome')!r}, {len(streams)} LLM streams, "
            f"Slack calls {[(c.method, c.error) for c in calls]}; log {log}"
        )
    stream = streams[0]
    signs = [c for c in calls if c.ok and c.method in FIRST_SIGN_METHODS]
    texts = [c for c in calls if c.ok and c.method in TEXT_METHODS]
    if not signs or not texts:
        raise BenchError(f"{kind} answer (seed {seed}): no visible Slack call: {[c.method for c in calls]}")
    if not _carries(texts[0], stream["first_text"]):
        raise BenchError(f"{kind} answer (seed {seed}): the first text call does not start with the first token")
    shown = [m.text for m in slack.bot_messages(CHANNEL_ID, ts)]
    whole, mismatch, fence_cuts = compare(stream["text"], shown)
    return Answer(
        kind=kind,
        chars=len(stream["text"]),
        outcome=log.get("outcome", "answered (not logged)"),
        seconds=seconds,
        first_sign_ms=(signs[0].at - started) * 1000,
        first_sign_method=signs[0].method,
        token_to_slack_ms=(texts[0].at - stream["first_text_at"]) * 1000,
        job_to_text_ms=(texts[0].at - started) * 1000,
        calls=Counter(c.method for c in calls),
        failed_calls=sum(not c.ok for c in calls),
        messages=len(shown),
        whole=whole,
        mismatch=mismatch,
        fence_cuts=fence_cuts,
        stream_seconds=stream["ended_at"] - stream["received_at"],
        log=log,
    )


def _answer_log(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "answer":
                return record
    return {}


def _carries(call: Call, first_delta: str) -> bool:
    """Whether a text call's text starts with the LLM's first delta: then it is the call that carries it."""
    text = call.params.get("markdown_text") or call.params.get("text") or ""
    for chunk in call.params.get("chunks") or []:
        if isinstance(chunk, dict) and isinstance(chunk.get("text"), str):
            text += chunk["text"]
    return text.startswith(first_delta)


def compare(sent: str, shown: list[str]) -> tuple[bool, str, int]:
    """Whether the messages shown, joined, are exactly ``sent`` once the fence lines added at cuts are removed.

    At a cut inside a code block the message before ends with a closing fence line (after a
    newline it may have added) and the next starts with the opening line again. Each message
    must continue ``sent`` where the previous one stopped, as shown or without those lines
    (every way is tried), so nothing lost, repeated or reordered can pass. Returns (whole, a
    description of the first mismatch, how many cuts fell inside a code block).
    """

    def variants(index: int) -> list[tuple[str, bool]]:
        """Message ``index`` as shown, and without the fence lines a cut may have added (and whether it reopens one)."""
        text = shown[index]
        found = [(text, False)]
        if index > 0 and (opened := _FENCE_OPEN.match(text)):
            found.append((text[opened.end() :], True))
        if index < len(shown) - 1 and _FENCE_OPEN.match(shown[index + 1]):
            for body, reopened in list(found):
                if closed := _FENCE_CLOSE.search(body):
                    found += [(body[: closed.start()], reopened), (body[: closed.start()] + "\n", reopened)]
        return found

    dead_ends: set[tuple[int, int]] = set()
    furthest = (0, 0)  # the deepest (message, position) that nothing continued from, for the report

    def walk(index: int, position: int) -> int | None:
        """Fence cuts on a way to match ``shown[index:]`` with ``sent[position:]``, or None if there is none."""
        nonlocal furthest
        if index == len(shown):
            if position == len(sent):
                return 0
        elif (index, position) not in dead_ends:
            for body, reopened in variants(index):
                if sent.startswith(body, position):
                    rest = walk(index + 1, position + len(body))
                    if rest is not None:
                        return rest + reopened
        dead_ends.add((index, position))
        furthest = max(furthest, (index, position))
        return None

    fence_cuts = walk(0, 0)
    if fence_cuts is not None:
        return True, "", fence_cuts
    index, position = furthest
    if index == len(shown):
        return False, f"{len(sent) - position} characters of {len(sent)} never shown (or extra text)", 0
    near = sent[position : position + 40]
    return False, f"message {index + 1} of {len(shown)} does not continue the answer at {position} ({near!r})", 0


# ---------------------------------------------------------------- the run


def environment(slack: FakeSlackAPI, llm: LLMServer) -> dict[str, str]:
    """The worker's environment: fakes only, defaults for everything else (OPENAI_TIMEOUT_SECONDS 60)."""
    return {
        "SLACK_BOT_TOKEN": FAKE_BOT_TOKEN,
        "SLACK_API_URL": slack.url,
        "OPENAI_API_KEY": "sk-bench-fake",
        "OPENAI_BASE_URL": f"{llm.url}/v1",
        "LOG_LEVEL": "WARNING",
    }


def run(plan: Plan, progress: bool = True) -> list[Answer]:
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"  # the SDKs read proxies from here
    answers: list[Answer] = []
    with contextlib.ExitStack() as stack:
        llm = LLMServer()
        stack.callback(llm.close)
        slack = stack.enter_context(FakeSlackAPI())
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mameka-bench-stream-")))
        (work / "home").mkdir()
        environ = environment(slack, llm)
        warm = warm_executor(environ)
        cold = cold_executor(environ, work / "home", work / "pycache")
        # (kind, executor, answer characters, pace, refuse the status); "warmup" answers are not kept.
        jobs: list[tuple[str, Executor, int, Pace, bool]] = [("warmup", warm, SHORT_CHARS, FAST_WARMUP, False)]
        jobs *= plan.warmup
        jobs += [("short", warm, SHORT_CHARS, REALISTIC, False)] * plan.short
        jobs += [("long", warm, LONG_CHARS, plan.long_pace, False)] * plan.long
        jobs += [("no_status", warm, SHORT_CHARS, REALISTIC, True)] * plan.no_status
        if plan.cold:  # a first cold run fills the bytecode cache
            jobs += [("warmup", cold, SHORT_CHARS, FAST_WARMUP, False)]
            jobs += [("cold", cold, SHORT_CHARS, REALISTIC, False)] * plan.cold
        for seed, (kind, execute, chars, pace, refuse_status) in enumerate(jobs):
            if progress:
                print(f"[stream] {seed + 1}/{len(jobs)}: {kind} ({chars} characters)…", file=sys.stderr, flush=True)
            answer = run_answer(execute, slack, llm, kind, chars, pace, seed, refuse_status)
            if answer.kind != "warmup":
                answers.append(answer)
    return answers


# ---------------------------------------------------------------- report


def render(answers: list[Answer], plan: Plan, command: str, seconds: float) -> str:
    lines: list[str] = []
    add = lines.append
    normal = [a for a in answers if a.kind in ("short", "long")]
    short = [a for a in answers if a.kind == "short"]
    long = [a for a in answers if a.kind == "long"]
    refused = [a for a in answers if a.kind == "no_status"]
    cold = [a for a in answers if a.kind == "cold"]
    add(f"## Streamed answers (`{command}`, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {seconds:.0f} s)")
    add("")
    add(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs. {plan.warmup} unmeasured jobs, then "
        f"{len(short)} short and {len(long)} long answers, one at a time, in one warm process through "
        f"`chalicelib.worker.run` ({len(cold)} more in cold processes):"
    )
    add(
        "a top-level mention in a channel. LLM: `devkit.fake_openai.paced_llm` (own process), first text after "
        "300-500 ms, then "
        f"a delta every ~{REALISTIC.every_ms} ms of ~{REALISTIC.delta_chars} characters (long answers: every "
        f"~{plan.long_pace.every_ms} ms, ~{plan.long_pace.delta_chars} characters). Slack: `devkit.fake_slack_api`."
    )
    add("")
    add("| measure | goal | median | p95 | max | answers |")
    add("|---|---|---:|---:|---:|---:|")

    def row(label: str, goal: str, values: list[float], unit: str = " ms", digits: int = 0) -> None:
        if values:
            summary = (statistics.median(values), percentile(values, 0.95), max(values))
            cells = [f"{v:.{digits}f}{unit}" for v in summary]
            add(f"| {label} | {goal} | {' | '.join(cells)} | {len(values)} |")

    row(
        "job reaches the worker → Slack's first sign (`setStatus`)",
        f"< {FIRST_SIGN_GOAL_MS:.0f} ms",
        [a.first_sign_ms for a in normal],
        digits=1,
    )
    row(
        "LLM sends its first token → Slack receives it (`chat.startStream`)",
        f"< {FIRST_TOKEN_GOAL_MS:.0f} ms",
        [a.token_to_slack_ms for a in normal],
        digits=1,
    )
    row("job reaches the worker → first answer text in Slack", "", [a.job_to_text_ms for a in normal])
    row(
        "first sign when `setStatus` is refused (`chat.startStream`)",
        f"< {FIRST_SIGN_GOAL_MS:.0f} ms",
        [a.first_sign_ms for a in refused],
    )
    row(
        "cold worker: `import app` starts → Slack's first sign (`setStatus`)",
        "",
        [a.first_sign_ms for a in cold],
    )
    row(f"Slack calls per answer, short (~{SHORT_CHARS} characters)", "", [a.total_calls for a in short], "")
    row(f"Slack calls per answer, long ({LONG_CHARS:,} characters)", "", [a.total_calls for a in long], "")
    add("")
    add("Slack calls per answer by method (median), and what the user ends up with:")
    add("")
    methods = " | ".join(f"`{m}`" for m in METHODS_SHOWN)
    add(f"| answer | characters | stream s | {methods} | messages | cuts in code | whole |")
    add("|---|---:|---:|" + "---:|" * len(METHODS_SHOWN) + "---:|---:|---|")
    for label, group in (("short", short), ("long", long), ("short, status refused", refused), ("short, cold", cold)):
        if not group:
            continue
        counts = " | ".join(f"{statistics.median([a.calls[m] for a in group]):g}" for m in METHODS_SHOWN)
        whole = sum(a.whole for a in group)
        add(
            f"| {label} | {statistics.median([a.chars for a in group]):,.0f} | "
            f"{statistics.median([a.stream_seconds for a in group]):.1f} | {counts} | "
            f"{statistics.median([a.messages for a in group]):g} | {sum(a.fence_cuts for a in group)} | "
            f"{whole}/{len(group)} |"
        )
    add("")
    add(
        '"whole": the bot\'s messages in the thread, joined, with the fence lines added at cuts removed, are exactly '
        'the text the LLM sent; "cuts in code": message breaks inside a code block (all answers of the row), where '
        "the fence was closed and reopened. Appends follow the stream's length (at most one per message every "
        "2 s): at the short answers' pace a 30,000-character answer would stream for about 4 minutes."
    )
    failures = [a for a in answers if not a.whole]
    for answer in failures:
        add(f"- not whole: {answer.kind} answer: {answer.mismatch}")
    refusals = sum(a.failed_calls for a in answers if a.kind != "no_status")
    if refusals:
        add(f"- Slack refused {refusals} calls in answers where nothing was scripted to fail.")
    add("")
    add("| goal | result |")
    add("|---|---|")
    worst_sign = max(a.first_sign_ms for a in normal)
    worst_token = max(a.token_to_slack_ms for a in normal)
    add(f"| first sign < {FIRST_SIGN_GOAL_MS:.0f} ms, every answer | {_check(worst_sign < FIRST_SIGN_GOAL_MS)} |")
    token_ok = worst_token < FIRST_TOKEN_GOAL_MS
    add(f"| first token to Slack < {FIRST_TOKEN_GOAL_MS:.0f} ms, every answer | {_check(token_ok)} |")
    add(f"| long answers arrive whole | {_check(all(a.whole for a in long))} |")
    add("")
    return "\n".join(lines) + "\n"


def _check(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The streamed answer's benchmark (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="a short run, to check the harness")
    parser.add_argument(
        "--output", default=str(RESULTS), help="where to write the report (default: %(default)s; '-': nowhere)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join([".venv/bin/python bench/stream.py", *given])
    started = time.monotonic()
    try:
        answers = run(plan)
    except (BenchError, ServeError) as error:
        print(f"[stream] error: {error}", file=sys.stderr)
        return 1
    report = render(answers, plan, command, time.monotonic() - started)
    print(report)
    if args.output != "-":
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report)
        print(f"[stream] written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
