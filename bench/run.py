"""The benchmark: mameka's Lambda paths against the least code that does the job, and against Bolt.

    .venv/bin/python bench/run.py            # `make bench`: the full run, a few minutes
    .venv/bin/python bench/run.py --quick    # a short run, for checking the harness
    .venv/bin/python bench/run.py --profile ours   # cProfile of one system's warm path
    .venv/bin/python bench/run.py --quick --sections worker --output /tmp/worker.md   # one section

Contract: it measures, side by side and interleaved in random order so that machine noise
hits every system alike,

- three HTTP functions fed signed slash-command API Gateway events (``bench/events.py``)
  through their Chalice object called as the Lambda handler: ``ours`` (``app.py``),
  ``bare`` (``bench/bare_app.py``) and ``bolt`` (``bench/bolt_app.py``); warm (one process
  each, per-request handler time) and cold (a fresh process per sample: import the app and
  handle one event, with cached bytecode for every system);
- ``ours-events``: ``app.py`` again, fed signed ``app_mention`` envelopes POSTed as JSON to
  ``/slack/events``, interleaved with the others, warm and cold, and reported next to
  ``ours`` (the slash route): the events route should cost no more;
- the worker's own time per job, less the time the fake LLM and Slack servers spent;
- the streamed answer (``bench/stream.py``, run as a child; its own report is appended):
  from a message job reaching the worker to Slack's first sign, from the LLM's first token
  to Slack, and Slack calls per short and 30,000-character answer;
- the HTTP function's and the worker's cold start as Lambda runs the deployed package:
  ``chalice package``'s zip unpacked read-only and imported with PYTHONDONTWRITEBYTECODE=1,
  as shipped and with bytecode added by ``scripts/compile_bytecode.py``.

Every AWS, OpenAI and Slack endpoint is a fake on 127.0.0.1 (``devkit.serve``: devkit's fake
Lambda, an OpenAI that answers at once, and a response_url, in a process of their own);
credentials and secrets are fake. It prints a Markdown report, writes it to
``bench/results/latest.md`` (``--output`` to change that, ``--output -`` for none; with
``--output``, the stream section's child writes no ``bench/results/stream.md`` of its own:
its report is in this one), and exits 0 whether or not the goals are met (it is a
measurement, not a test); it exits 1 if a system fails to do its job, since its numbers
would then mean nothing. Every loop is bounded, every child process has a timeout, and all
of them and the fakes are stopped before it returns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from events import TEXTS, app_mention_event, slash_command_event, worker_event

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # last: for devkit, without letting the repository shadow bench/ modules

from devkit.fake_lambda import invoked_function  # noqa: E402
from devkit.serve import Served, ServeError, read_line, stop  # noqa: E402

BENCH = ROOT / "bench"
CHILD = BENCH / "child.py"
COMPILE_BYTECODE = ROOT / "scripts" / "compile_bytecode.py"
RESULTS = BENCH / "results" / "latest.md"
PYTHON = sys.executable
SIGNING_SECRET = "bench-fake-signing-secret-not-real"
CHILD_TIMEOUT_SECONDS = 180.0

GOALS = (
    # (name, numerator, denominator, measure, comparison, target)
    ("ours/bare warm median", "ours", "bare", "warm", "<=", 1.10),
    ("ours/bare cold median", "ours", "bare", "cold", "<=", 1.05),
    ("bolt/ours warm median", "bolt", "ours", "warm", ">=", 1.65),
    ("bolt/ours cold median", "bolt", "ours", "cold", ">=", 1.33),
    # The events route should cost no more than the slash route; 5% is this machine's run-to-run noise.
    ("events/slash warm median", "ours-events", "ours", "warm", "<=", 1.05),
    ("events/slash cold median", "ours-events", "ours", "cold", "<=", 1.05),
)


class BenchError(RuntimeError):
    """A system or the harness failed; the numbers would mean nothing."""


@dataclass(frozen=True)
class System:
    name: str
    app_dir: Path
    module: str
    function_name: str  # the HTTP function's own name (Bolt re-invokes it)
    worker_name: str  # what WORKER_FUNCTION_NAME says (Bolt has no separate worker)
    route: str = "slash"  # what it is fed: "slash" (/slack/commands) or "events" (/slack/events)


OURS = System("ours", ROOT, "app", "bench-ours-http", "bench-ours-worker")
# The same app on its other route; a worker name of its own keeps its invokes apart in the fake's counts.
OURS_EVENTS = System("ours-events", ROOT, "app", "bench-ours-http", "bench-ours-events-worker", route="events")
BARE = System("bare", BENCH, "bare_app", "bench-bare-http", "bench-bare-worker")
BOLT = System("bolt", BENCH, "bolt_app", "bench-bolt-http", "bench-bolt-unused-worker")
SYSTEMS: tuple[System, ...] = (OURS, OURS_EVENTS, BARE, BOLT)  # `--candidate DIR` appends one more (see main)


@dataclass(frozen=True)
class Plan:
    warm_rounds: int
    warm_batch: int
    warm_warmup: int
    cold_runs: int
    worker_jobs: int
    worker_warmup: int
    package_http_runs: int
    package_worker_runs: int
    stream_quick: bool = False  # bench/stream.py's --quick


# Small warm batches, many rounds: a burst of noise from elsewhere on the machine then lands on
# neighbouring batches of every system, instead of on one system's long batch.
FULL = Plan(600, 10, 300, 100, 300, 30, 20, 10)
QUICK = Plan(40, 10, 50, 5, 40, 5, 3, 2, stream_quick=True)


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------- processes


class Fakes(Served):
    """The fake endpoints' process (``python -m devkit.serve``): Lambda, an instant OpenAI, a response_url."""

    def __init__(self) -> None:
        super().__init__("lambda", "openai-instant", "response_url", python=PYTHON)
        self.lambda_url, self.openai_url = self.urls["lambda"], self.urls["openai-instant"]
        self.response_url = self.urls["response_url"]

    def seconds(self, kind: str) -> list[float]:
        """The time the fake ``kind`` spent on each request since its last reset."""
        return [request["seconds"] for request in self.stats(kind)["requests"]]

    def invokes(self) -> tuple[dict[str, dict[str, int]], int]:
        """Per function: the invokes, new TCP connections and payload bytes the fake Lambda saw;
        and the threads in the fakes' process (one per open connection)."""
        stats = self.stats("lambda")
        seen: dict[str, dict[str, int]] = {}
        for request in stats["requests"]:
            function = invoked_function(request["path"])
            if function is not None:
                counts = seen.setdefault(function, {"invokes": 0, "connections": 0, "payload_bytes": 0})
                counts["invokes"] += 1
                counts["connections"] += int(request["new_connection"])
                counts["payload_bytes"] += request["bytes"]
        return seen, stats["threads"]


def readline(process: subprocess.Popen[str], timeout: float) -> str:
    """One line from a child, killing it if none comes in ``timeout`` seconds."""
    line = read_line(process, timeout)
    if not line:
        raise BenchError(f"child {process.args!r} ended or timed out (exit {process.poll()})")
    return line


def child_env(fakes: Fakes, home: Path, function_name: str, worker_name: str, **extra: str) -> dict[str, str]:
    """A Lambda-like environment, built from nothing so the caller's settings cannot leak in.

    Callers add PYTHONPYCACHEPREFIX (bytecode cached outside the project, which must not get
    a ``chalicelib/__pycache__``: Chalice would zip it) or PYTHONDONTWRITEBYTECODE.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # empty: no ~/.aws files to read
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "AKIDBENCHFAKE0000000",
        "AWS_SECRET_ACCESS_KEY": "bench-fake-secret-access-key",
        "AWS_SESSION_TOKEN": "bench-fake-session-token",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_ENDPOINT_URL_LAMBDA": fakes.lambda_url,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        # The deployed default (hooks.slack.com, hooks.slack-gov.com: where the signed commands'
        # response_url points, as Slack's does) plus the fakes' loopback host, which the worker
        # posts to; in "Lambda" plain http to loopback is allowed only when listed.
        "RESPONSE_URL_HOSTS": "hooks.slack.com,hooks.slack-gov.com,127.0.0.1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "WORKER_FUNCTION_NAME": worker_name,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "OPENAI_API_KEY": "sk-test-fake",
        "OPENAI_BASE_URL": fakes.openai_url + "/v1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    env.update(extra)
    return env


def child_args(mode: str, app_dir: Path, module: str, function_name: str, **options: str) -> list[str]:
    args = [PYTHON, str(CHILD), mode, "--app-dir", str(app_dir), "--module", module, "--function-name", function_name]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", value]
    return args


def run_child(args: list[str], env: dict[str, str], stdin: str = "") -> tuple[dict[str, Any], float]:
    """Run a one-shot child; returns its report and its wall time (start to exit) in ms."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            args, input=stdin, capture_output=True, text=True, env=env, cwd=ROOT, timeout=CHILD_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{args[2:]} took over {CHILD_TIMEOUT_SECONDS} s") from None
    wall_ms = (time.perf_counter() - started) * 1000
    lines = done.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    if done.returncode != 0 or not report.get("ok", True):
        raise BenchError(f"{args[2:]} failed (exit {done.returncode}): {report}\n{done.stderr[-3000:]}")
    return report, wall_ms


class WarmChild:
    """A long-lived process hosting one system, handling batches of events on request."""

    def __init__(self, system: System, env: dict[str, str], stderr: IO[str]) -> None:
        self.system = system
        self.process = subprocess.Popen(
            child_args("warm", system.app_dir, system.module, system.function_name, route=system.route),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        self.ready = json.loads(readline(self.process, CHILD_TIMEOUT_SECONDS))

    def run(self, count: int) -> tuple[list[int], list[int]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"run {count}\n")
        self.process.stdin.flush()
        report = json.loads(readline(self.process, CHILD_TIMEOUT_SECONDS))
        if report["failures"]:
            raise BenchError(
                f"{self.system.name}: {report['failures']} non-200 answers, e.g. {report['first_failure']}"
            )
        return report["ns"], report["cpu_ns"]

    def close(self) -> None:
        stop(self.process)


# ---------------------------------------------------------------- measurements


@dataclass
class Results:
    plan: Plan
    seed: int
    warm_ns: dict[str, list[int]] = field(default_factory=dict)
    warm_cpu_ns: dict[str, list[int]] = field(default_factory=dict)
    warm_round_ratios: dict[str, list[float]] = field(default_factory=dict)
    invokes: dict[str, dict[str, int]] = field(default_factory=dict)
    cold: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    imports: dict[str, dict[str, float]] = field(default_factory=dict)
    worker: dict[str, Any] = field(default_factory=dict)
    package: dict[str, Any] = field(default_factory=dict)
    stream: str = ""  # bench/stream.py's Markdown report
    seconds: float = 0.0
    fake_threads: int = 0
    load: list[tuple[float, float, float]] = field(default_factory=list)


def measure_warm(
    fakes: Fakes, home: Path, pycache: Path, logs: Path, plan: Plan, rng: random.Random, results: Results
) -> None:
    with ExitStack() as stack:
        children: dict[str, WarmChild] = {}
        for system in SYSTEMS:
            stderr = stack.enter_context((logs / f"warm-{system.name}.log").open("w"))
            env = child_env(fakes, home, system.function_name, system.worker_name, PYTHONPYCACHEPREFIX=str(pycache))
            children[system.name] = child = WarmChild(system, env, stderr)
            stack.callback(child.close)
        for child in children.values():
            child.run(plan.warm_warmup)
        fakes.stats("lambda", reset=True)
        samples: dict[str, list[int]] = defaultdict(list)
        cpu_samples: dict[str, list[int]] = defaultdict(list)
        round_medians: dict[str, list[float]] = defaultdict(list)
        for _ in range(plan.warm_rounds):
            order = list(children)
            rng.shuffle(order)
            for name in order:
                batch, cpu = children[name].run(plan.warm_batch)
                samples[name] += batch
                cpu_samples[name] += cpu
                round_medians[name].append(median(batch))
        seen, results.fake_threads = fakes.invokes()
    results.warm_ns = dict(samples)
    results.warm_cpu_ns = dict(cpu_samples)
    pairs = [("ours", "bare"), ("bolt", "ours"), ("ours-events", "ours")]
    pairs += [("candidate", "bare")] * ("candidate" in round_medians)
    results.warm_round_ratios = {
        f"{top}/{bottom}": [t / b for t, b in zip(round_medians[top], round_medians[bottom], strict=True)]
        for top, bottom in pairs
    }
    for system in SYSTEMS:
        target = system.function_name if system.name == "bolt" else system.worker_name
        counts = seen.get(target, {"invokes": 0, "connections": 0, "payload_bytes": 0})
        expected = plan.warm_rounds * plan.warm_batch
        if counts["invokes"] != expected:
            raise BenchError(f"{system.name}: the fake Lambda saw {counts['invokes']} invokes, expected {expected}")
        results.invokes[system.name] = {"function": target, **counts}  # type: ignore[dict-item]


def signed_event_json(system: System = OURS) -> str:
    """A freshly signed event for ``system``'s route, as JSON."""
    build = app_mention_event if system.route == "events" else slash_command_event
    return json.dumps(build(SIGNING_SECRET, TEXTS[0]))


def measure_cold(fakes: Fakes, home: Path, pycache: Path, plan: Plan, rng: random.Random, results: Results) -> None:
    envs = {
        s.name: child_env(fakes, home, s.function_name, s.worker_name, PYTHONPYCACHEPREFIX=str(pycache))
        for s in SYSTEMS
    }
    # A first run per system fills the bytecode cache: every system is then measured with
    # cached bytecode (the deployed-package section measures what compiling costs).
    for system in SYSTEMS:
        run_child(
            child_args("cold", system.app_dir, system.module, system.function_name),
            envs[system.name],
            signed_event_json(system),
        )
    samples: dict[str, list[dict[str, float]]] = defaultdict(list)
    for _ in range(plan.cold_runs):
        order = list(SYSTEMS)
        rng.shuffle(order)
        for system in order:
            args = child_args("cold", system.app_dir, system.module, system.function_name)
            report, wall_ms = run_child(args, envs[system.name], signed_event_json(system))
            samples[system.name].append(
                {
                    "import_ms": report["import_ms"],
                    "first_ms": report["first_ms"],
                    "total_ms": report["import_ms"] + report["first_ms"],
                    "wall_ms": wall_ms,
                    "modules": report["modules"],
                }
            )
    results.cold = dict(samples)
    # Where the import time goes: one -X importtime run per system, self time by top-level package.
    for system in SYSTEMS:
        args = child_args("cold", system.app_dir, system.module, system.function_name)
        args.insert(1, "-X")
        args.insert(2, "importtime")
        done = subprocess.run(
            args,
            input=signed_event_json(system),
            capture_output=True,
            text=True,
            env=envs[system.name],
            cwd=ROOT,
            timeout=CHILD_TIMEOUT_SECONDS,
        )
        results.imports[system.name] = import_breakdown(done.stderr)


def import_breakdown(stderr: str) -> dict[str, float]:
    """Self import time (ms) per top-level package, from ``-X importtime`` output."""
    totals: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, _, name = (part.strip() for part in line[len("import time:") :].split("|"))
        if not self_us.isdigit():
            continue  # the header line
        top = name.split(".")[0]
        group = "(stdlib)" if top in sys.stdlib_module_names or top.startswith("_") else top
        totals[group] += int(self_us) / 1000
    return dict(totals)


def measure_worker(fakes: Fakes, home: Path, pycache: Path, plan: Plan, results: Results) -> None:
    env = child_env(fakes, home, OURS.worker_name, "", PYTHONPYCACHEPREFIX=str(pycache))
    args = child_args(
        "worker",
        OURS.app_dir,
        OURS.module,
        OURS.worker_name,
        slack_url=fakes.response_url,
        openai_url=fakes.openai_url,
        warmup=str(plan.worker_warmup),
        jobs=str(plan.worker_jobs),
    )
    report, _ = run_child(args, env)
    llm, slack = report["openai_server_seconds"], report["slack_server_seconds"]
    if not (len(llm) == len(slack) == len(report["ns"]) == plan.worker_jobs):
        raise BenchError(f"worker: {len(report['ns'])} jobs, {len(llm)} LLM calls, {len(slack)} replies")
    total_ms = [ns / 1e6 for ns in report["ns"]]
    fakes_ms = [(a + b) * 1000 for a, b in zip(llm, slack, strict=True)]
    results.worker = {
        "total_ms": total_ms,
        "fakes_ms": fakes_ms,
        "overhead_ms": [t - f for t, f in zip(total_ms, fakes_ms, strict=True)],
    }


def measure_stream(pycache: Path, plan: Plan, results: Results, own_file: bool = True) -> None:
    """``bench/stream.py`` in a child process (its progress goes to our stderr); keeps its report.

    ``own_file``: let it write ``bench/results/stream.md`` too (``make bench``); otherwise ``--output -``.
    """
    args = [PYTHON, str(BENCH / "stream.py"), "--quick"] if plan.stream_quick else [PYTHON, str(BENCH / "stream.py")]
    if not own_file:
        args += ["--output", "-"]
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(pycache), "NO_PROXY": "127.0.0.1,localhost"}
    try:
        done = subprocess.run(args, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, timeout=900)
    except subprocess.TimeoutExpired:
        raise BenchError("bench/stream.py took over 900 s") from None
    if done.returncode != 0:
        raise BenchError(f"bench/stream.py failed (exit {done.returncode}); its error is above")
    results.stream = done.stdout.strip() + "\n"


def measure_package(fakes: Fakes, home: Path, work: Path, plan: Plan, rng: random.Random, results: Results) -> None:
    out = work / "chalice-out"
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(PYTHON).parent / "chalice"), "package", "--stage", "prod", str(out)],
        capture_output=True,
        text=True,
        cwd=OURS.app_dir,
        # chalice imports app.py: no bytecode may land in chalicelib/, where chalice would zip it.
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=900,
    )
    if done.returncode != 0:
        raise BenchError(f"chalice package failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    package_seconds = time.perf_counter() - started
    shipped = out / "deployment.zip"
    runtime = {
        f["Properties"].get("Runtime")
        for f in json.loads((out / "sam.json").read_text())["Resources"].values()
        if f.get("Type") == "AWS::Serverless::Function"
    }
    variants = {"as shipped (.py only)": shipped}
    compile_seconds: dict[str, float] = {}
    for mode in ("unchecked-hash", "checked-hash"):
        target = work / f"deployment-{mode}.zip"
        shutil.copyfile(shipped, target)
        started = time.perf_counter()
        subprocess.run(
            [PYTHON, str(COMPILE_BYTECODE), "--invalidation-mode", mode, str(target)],
            check=True,
            capture_output=True,
            timeout=600,
        )
        compile_seconds[mode] = time.perf_counter() - started
        variants[f"+ bytecode ({mode})"] = target
    trees: dict[str, Path] = {}
    info: dict[str, dict[str, Any]] = {}
    for index, (name, zip_path) in enumerate(variants.items()):
        tree = work / f"tree-{index}"
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            archive.extractall(tree)
        make_read_only(tree)
        trees[name] = tree
        info[name] = {
            "zip_bytes": zip_path.stat().st_size,
            "unpacked_bytes": sum(m.file_size for m in members),
            "files": len(members),
            "pyc": sum(m.filename.endswith(".pyc") for m in members),
            "pyc_dirs": sorted({m.filename.rpartition("/")[0] for m in members if m.filename.endswith(".pyc")}),
            "pyc_files_on_disk": count_pyc(tree),
        }
    envs = {
        kind: child_env(
            fakes,
            home,
            OURS.function_name if kind == "http" else OURS.worker_name,
            OURS.worker_name if kind == "http" else "",
            PYTHONDONTWRITEBYTECODE="1",
        )
        for kind in ("http", "worker")
    }
    http: dict[str, list[dict[str, float]]] = defaultdict(list)
    worker: dict[str, list[dict[str, float]]] = defaultdict(list)
    worker_variants = list(trees)[:2]  # as shipped and unchecked-hash: the worker's point is openai's size
    for _ in range(plan.package_http_runs):
        order = list(trees)
        rng.shuffle(order)
        for name in order:
            args = child_args("cold", trees[name], "app", OURS.function_name, kind="http")
            report, wall_ms = run_child(args, envs["http"], signed_event_json())
            http[name].append({**report, "total_ms": report["import_ms"] + report["first_ms"], "wall_ms": wall_ms})
    for i in range(plan.package_worker_runs):
        order = list(worker_variants)
        rng.shuffle(order)
        for name in order:
            event = json.dumps(worker_event(TEXTS[0], f"{fakes.response_url}/commands/T0BENCH01/cold{i}/bench"))
            fakes.stats("openai-instant", reset=True)
            fakes.stats("response_url", reset=True)
            args = child_args("cold", trees[name], "app", OURS.worker_name, kind="worker")
            report, wall_ms = run_child(args, envs["worker"], event)
            served = fakes.seconds("openai-instant") + fakes.seconds("response_url")
            if len(served) != 2:
                raise BenchError(f"cold worker ({name}) made {len(served)} calls to the fakes, expected 2")
            worker[name].append(
                {**report, "total_ms": report["import_ms"] + report["first_ms"], "fakes_ms": sum(served) * 1000}
            )
    # One verbose run per variant: does each module from the zip load from a .pyc, or compile?
    for name, tree in trees.items():
        event = json.dumps(worker_event(TEXTS[0], f"{fakes.response_url}/commands/T0BENCH01/verbose/bench"))
        args = child_args("cold", tree, "app", OURS.worker_name, kind="worker")
        args.insert(1, "-v")
        done = subprocess.run(
            args,
            input=event,
            capture_output=True,
            text=True,
            env=envs["worker"],
            cwd=ROOT,
            timeout=CHILD_TIMEOUT_SECONDS,
        )
        # `-v` says "# code object from '<x.pyc>'" for bytecode and "# code object from <x.py>" for a compile.
        loads = [line.removeprefix("# code object from ").strip("'") for line in done.stderr.splitlines()]
        loads = [path for path in loads if path.startswith(f"{tree}{os.sep}")]
        info[name]["loaded_from_pyc"] = sum(path.endswith(".pyc") for path in loads)
        info[name]["compiled"] = sum(path.endswith(".py") for path in loads)
    for name, tree in trees.items():
        if count_pyc(tree) != info[name]["pyc_files_on_disk"]:
            raise BenchError(f"bytecode was written into the read-only tree {tree}: the cold starts compiled less")
    results.package = {
        "package_seconds": package_seconds,
        "compile_seconds": compile_seconds,
        "runtime": sorted(r for r in runtime if r),
        "info": info,
        "http": dict(http),
        "worker": dict(worker),
    }


def make_read_only(tree: Path) -> None:
    """chmod -R a-w, as /var/task is. (Root ignores it; PYTHONDONTWRITEBYTECODE=1 is the real guard.)"""
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222)


def make_writable(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)


def count_pyc(tree: Path) -> int:
    return sum(1 for _ in tree.rglob("*.pyc"))


def profile(system_name: str, requests: int) -> int:
    """cProfile of one system's warm path, printed; the fakes run as in the benchmark."""
    system = next(s for s in SYSTEMS if s.name == system_name)
    with ExitStack() as stack:
        fakes = Fakes()
        stack.callback(fakes.close)
        work = stack.enter_context(workspace())
        env = child_env(fakes, work, system.function_name, system.worker_name, PYTHONPYCACHEPREFIX=str(work / "pyc"))
        args = child_args(
            "profile", system.app_dir, system.module, system.function_name, requests=str(requests), route=system.route
        )
        report, _ = run_child(args, env)
        print(report["text"])
    return 0


# ---------------------------------------------------------------- report


def versions() -> str:
    names = ("chalice", "boto3", "botocore", "slack_bolt", "slack_sdk", "openai")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def ratio_check(value: float, comparison: str, target: float) -> str:
    return "PASS" if (value <= target if comparison == "<=" else value >= target) else "MISS"


def add_routes(results: Results, add: Callable[[str], None]) -> None:
    """``ours`` on its two routes, side by side: the events route should cost no more."""
    pair = ("ours", "ours-events")
    rows: list[tuple[str, float, float, str]] = []
    if all(name in results.warm_ns for name in pair):
        warm = {name: [ns / 1000 for ns in results.warm_ns[name]] for name in pair}
        cpu = {name: [ns / 1000 for ns in results.warm_cpu_ns[name]] for name in pair}
        rows += [
            ("warm median µs", median(warm["ours"]), median(warm["ours-events"]), "{:.0f}"),
            ("warm p99 µs", percentile(warm["ours"], 0.99), percentile(warm["ours-events"], 0.99), "{:.0f}"),
            ("warm CPU median µs", median(cpu["ours"]), median(cpu["ours-events"]), "{:.0f}"),
        ]
        payload = {n: results.invokes[n]["payload_bytes"] / max(1, results.invokes[n]["invokes"]) for n in pair}
        rows.append(("payload bytes per invoke", payload["ours"], payload["ours-events"], "{:.0f}"))
    if all(name in results.cold for name in pair):
        cold = {name: [r["total_ms"] for r in results.cold[name]] for name in pair}
        label = "cold: import + first event, median ms"
        rows.append((label, median(cold["ours"]), median(cold["ours-events"]), "{:.1f}"))
    if not rows:
        return
    add("## Our HTTP function on both routes: slash command and Events API")
    add("")
    add("`ours` is fed signed slash commands (form, `/slack/commands`), `ours-events` signed `app_mention`")
    add("envelopes (JSON, `/slack/events`); the same app, interleaved with the other systems above.")
    add("")
    add("| ours | slash command | app_mention event | events / slash |")
    add("|---|---:|---:|---:|")
    for label, slash, events, form in rows:
        add(f"| {label} | {form.format(slash)} | {form.format(events)} | {events / slash:.2f}x |")
    add("")


def render(results: Results, command: str) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"# mameka benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    add("")
    add(f"Command: {command} (in `{ROOT}`). Seed {results.seed}; total {results.seconds:.0f} s.")
    add(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; {versions()}.")
    if results.load:
        add(
            "Load average (1, 5, 15 min) at start and end: "
            + "; ".join(" ".join(f"{v:.2f}" for v in load) for load in results.load)
            + ". Other work on the machine shows up as noise; interleaving spreads it."
        )
    add("")
    goal_values: dict[tuple[str, str], float] = {}
    if results.warm_ns:
        bare_median = median(results.warm_ns["bare"])
        add("## HTTP function, warm: one handler call per request")
        add("")
        add(f"{results.plan.warm_rounds} rounds x {results.plan.warm_batch} requests per system, systems in random")
        add("order each round, after a warm-up; time of `app(event, context)` only (the worker invoke included).")
        add("")
        add("| system | requests | median µs | p90 µs | p99 µs | median vs bare | CPU µs (median) | CPU vs bare |")
        add("|---|---:|---:|---:|---:|---:|---:|---:|")
        bare_cpu = median(results.warm_cpu_ns["bare"])
        for system in SYSTEMS:
            us = [ns / 1000 for ns in results.warm_ns[system.name]]
            cpu = median(results.warm_cpu_ns[system.name])
            add(
                f"| {system.name} | {len(us)} | {median(us):.0f} | {percentile(us, 0.90):.0f} | "
                f"{percentile(us, 0.99):.0f} | {median(us) / (bare_median / 1000):.2f}x | {cpu / 1000:.0f} | "
                f"{cpu / bare_cpu:.2f}x |"
            )
        add("")
        add("CPU is the handler thread's own CPU time: it leaves out waiting for the fake Lambda and being")
        add("preempted, so it moves less with the machine's load. The goals use the wall-clock median.")
        for key, values in results.warm_round_ratios.items():
            add("")
            add(
                f"Per-round {key} ratio of medians: median {median(values):.3f}, 25th–75th percentile "
                f"{percentile(values, 0.25):.2f}–{percentile(values, 0.75):.2f} over {len(values)} rounds."
            )
        add("")
        add("What the fake Lambda saw during the measured rounds:")
        add("")
        add("| system | invoked function | invokes | new TCP connections | payload bytes per invoke |")
        add("|---|---|---:|---:|---:|")
        for system in SYSTEMS:
            seen = results.invokes[system.name]
            add(
                f"| {system.name} | {seen['function']} | {seen['invokes']} | {seen['connections']} | "
                f"{seen['payload_bytes'] / max(1, seen['invokes']):.0f} |"
            )
        add("")
        add(f"Threads in the fakes' process after the rounds: {results.fake_threads} (one per open connection).")
        add("")
        for system in SYSTEMS:
            goal_values[(system.name, "warm")] = median(results.warm_ns[system.name])
    if results.cold:
        add("## HTTP function, cold: a fresh process imports the app and handles one event")
        add("")
        add(f"{results.plan.cold_runs} processes per system, interleaved. Bytecode is cached for every system")
        add("(PYTHONPYCACHEPREFIX, filled by a discarded first run), so this is import and first-request work,")
        add("not compiling; the goal uses import + first event. Process wall adds interpreter start and exit.")
        add("")
        add(
            "| system | import ms | first event ms | import + first ms (median) | min ms | p90 ms | process wall ms "
            "| modules |"
        )
        add("|---|---:|---:|---:|---:|---:|---:|---:|")
        for system in SYSTEMS:
            runs = results.cold[system.name]
            totals = [r["total_ms"] for r in runs]
            add(
                f"| {system.name} | {median([r['import_ms'] for r in runs]):.1f} | "
                f"{median([r['first_ms'] for r in runs]):.1f} | {median(totals):.1f} | {min(totals):.1f} | "
                f"{percentile(totals, 0.9):.1f} | "
                f"{median([r['wall_ms'] for r in runs]):.0f} | {runs[0]['modules']:.0f} |"
            )
            goal_values[(system.name, "cold")] = median(totals)
        add("")
    add_routes(results, add)
    if results.imports:
        add("### Where the cold path's import time goes (`-X importtime`, self ms by top-level package)")
        add("")
        add("One run per system, import and first event; `-X importtime` inflates times, compare columns.")
        add("")
        keys = sorted(results.imports["ours"], key=lambda k: -results.imports["ours"][k])[:10]
        extra = [
            k for s in ("bare", "bolt") for k in sorted(results.imports[s], key=lambda k: -results.imports[s][k])[:3]
        ]
        keys += [k for k in dict.fromkeys(extra) if k not in keys]
        add("| package | " + " | ".join(s.name for s in SYSTEMS) + " |")
        add("|---|" + "---:|" * len(SYSTEMS))
        for key in keys:
            add(f"| {key} | " + " | ".join(f"{results.imports[s.name].get(key, 0.0):.1f}" for s in SYSTEMS) + " |")
        add("| **all** | " + " | ".join(f"**{sum(results.imports[s.name].values()):.1f}**" for s in SYSTEMS) + " |")
        add("")
    if goal_values:
        add("## Goals")
        add("")
        add("Margin: how far the measured ratio is from its target, in percent of the target (positive is the")
        add("good side). On this 2-core machine repeated runs moved these ratios by a few percent; a margin")
        add("that small is within run-to-run noise.")
        add("")
        add("| goal | target | measured | margin | result |")
        add("|---|---|---:|---:|---|")
        goals = list(GOALS)
        if any(s.name == "candidate" for s in SYSTEMS):  # the same goals, for the change under test
            goals += [
                (name.replace("ours", "candidate"), top.replace("ours", "candidate"),
                 bottom.replace("ours", "candidate"), measure, comparison, target)
                for name, top, bottom, measure, comparison, target in GOALS
            ]  # fmt: skip
        for name, top, bottom, measure, comparison, target in goals:
            if (top, measure) in goal_values and (bottom, measure) in goal_values:
                value = goal_values[(top, measure)] / goal_values[(bottom, measure)]
                margin = (target / value - 1 if comparison == "<=" else value / target - 1) * 100
                add(
                    f"| {name} | {comparison} {target:.2f}x | {value:.3f}x | {margin:+.1f}% | "
                    f"{ratio_check(value, comparison, target)} |"
                )
        add("")
    if results.worker:
        worker = results.worker
        add("## Worker: its own time per job, the fake LLM's and Slack's time taken out")
        add("")
        add(
            f"`app.worker(event, context)` (ours) for {len(worker['total_ms'])} jobs after "
            f"{results.plan.worker_warmup} warm-up jobs, one process, bytecode cached; the fakes time each request"
        )
        add("from its request line to its last byte, and that time is subtracted per job.")
        add("")
        add("| per job | median ms | p90 ms | p99 ms |")
        add("|---|---:|---:|---:|")
        for label, key in (
            ("total", "total_ms"),
            ("in the fakes (LLM + response_url)", "fakes_ms"),
            ("**worker overhead**", "overhead_ms"),
        ):
            values = worker[key]
            add(f"| {label} | {median(values):.2f} | {percentile(values, 0.9):.2f} | {percentile(values, 0.99):.2f} |")
        add("")
    if results.stream:
        lines.append(results.stream)  # bench/stream.py's report, with its own headings
    if results.package:
        package = results.package
        add("## Deployed package: cold start as Lambda runs it")
        add("")
        add(
            f"`chalice package --stage prod` ({package['package_seconds']:.1f} s, runtime "
            f"{', '.join(package['runtime'])}); zip unpacked, `chmod -R a-w`, first on `sys.path` as `/var/task` is;"
        )
        add("PYTHONDONTWRITEBYTECODE=1; boto3 and the standard library come from the venv with their bytecode, as")
        add(
            "the Lambda runtime provides them. Bytecode added by `scripts/compile_bytecode.py` ("
            + ", ".join(f"{mode} {seconds:.1f} s" for mode, seconds in package["compile_seconds"].items())
            + ")."
        )
        add("")
        add(
            "| variant | zip MB | unpacked MB | .pyc | HTTP import + first ms (median) | import ms "
            "| modules from the zip | worker import + first job ms (median) | modules from the zip |"
        )
        add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, info in package["info"].items():
            runs = package["http"][name]
            worker_runs = package["worker"].get(name)
            worker_cell = (
                f"{median([r['total_ms'] for r in worker_runs]):.0f} | {worker_runs[0]['modules_from_app_dir']}"
                if worker_runs
                else "– | –"
            )
            add(
                f"| {name} | {info['zip_bytes'] / 1e6:.2f} | {info['unpacked_bytes'] / 1e6:.1f} | {info['pyc']} | "
                f"{median([r['total_ms'] for r in runs]):.1f} | {median([r['import_ms'] for r in runs]):.1f} | "
                f"{runs[0]['modules_from_app_dir']} | {worker_cell} |"
            )
        names = list(package["info"])
        shipped, compiled = names[0], names[1]
        http_saved = median([r["total_ms"] for r in package["http"][shipped]]) - median(
            [r["total_ms"] for r in package["http"][compiled]]
        )
        worker_saved = median([r["total_ms"] for r in package["worker"][shipped]]) - median(
            [r["total_ms"] for r in package["worker"][compiled]]
        )
        add("")
        add(
            f"Compiling costs the HTTP function {http_saved:.0f} ms and the worker {worker_saved:.0f} ms per cold "
            f"start (as shipped minus unchecked-hash bytecode; {results.plan.package_http_runs} and "
            f"{results.plan.package_worker_runs} runs per variant, interleaved)."
        )
        add("")
        add(
            "Modules from the zip, in one verbose (`-v`) worker cold start per variant: "
            + "; ".join(
                f"{name}: {info['loaded_from_pyc']} loaded from .pyc, {info['compiled']} compiled"
                for name, info in package["info"].items()
            )
            + "."
        )
        add(
            "The HTTP function's modules from the zip: "
            + ", ".join(package["http"][shipped][0]["packages_from_app_dir"])
            + "."
        )
        stray = package["info"][shipped]["pyc"]
        if stray:
            add(
                f"The zip as shipped holds {stray} stray `.pyc` (local bytecode Chalice zipped from "
                f"{', '.join(f'`{d}`' for d in package['info'][shipped]['pyc_dirs'])}); they are timestamp-based and "
                "Chalice sets every entry's time to 1980-01-01, so they never match and the sources compile anyway."
            )
        add("")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


@contextmanager
def workspace() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mameka-bench-"))
    try:
        yield path
    finally:
        make_writable(path)
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mameka's Lambda benchmark (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="a short run, to check the harness")
    parser.add_argument("--seed", type=int, default=None, help="the interleaving order's random seed")
    parser.add_argument(
        "--sections",
        default="warm,cold,worker,stream,package",
        help="comma-separated subset of warm,cold,worker,stream,package (default: all)",
    )
    parser.add_argument(
        "--candidate",
        type=Path,
        metavar="DIR",
        help="also measure the app in DIR (a copy of the project with a change to try) as `candidate`",
    )
    parser.add_argument(
        "--profile",
        choices=["ours", "ours-events", "bare", "bolt", "candidate"],
        help="print a cProfile of a warm path, only",
    )
    parser.add_argument("--profile-requests", type=int, default=2000)
    parser.add_argument(
        "--output",
        default=None,
        metavar="PATH",
        help=f"where to write the report (default: {RESULTS.relative_to(ROOT)}; '-' for nowhere)",
    )
    args = parser.parse_args(argv)
    global SYSTEMS
    if args.candidate:
        if not (args.candidate / "app.py").is_file():
            parser.error(f"{args.candidate} has no app.py")
        candidate = System(
            "candidate", args.candidate.resolve(), "app", "bench-candidate-http", "bench-candidate-worker"
        )
        SYSTEMS = (*SYSTEMS, candidate)
    if args.profile:
        try:
            return profile(args.profile, args.profile_requests)
        except BenchError as error:
            print(f"[bench] error: {error}", file=sys.stderr)
            return 1
    sections = set(args.sections.split(","))
    known = {"warm", "cold", "worker", "stream", "package"}
    if not sections <= known:
        parser.error(f"unknown sections: {', '.join(sorted(sections - known))}")
    plan = QUICK if args.quick else FULL
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    results = Results(plan=plan, seed=seed)
    given = argv if argv is not None else sys.argv[1:]
    command = f"`{' '.join(['.venv/bin/python bench/run.py', *given])}`" + ("" if given else ", i.e. `make bench`")
    started = time.perf_counter()
    results.load.append(os.getloadavg())
    with ExitStack() as stack:
        work = stack.enter_context(workspace())
        home, pycache, logs = work / "home", work / "pycache", work / "logs"
        for directory in (home, pycache, logs):
            directory.mkdir()
        fakes = Fakes()
        stack.callback(fakes.close)
        steps = (
            ("warm", lambda: measure_warm(fakes, home, pycache, logs, plan, rng, results)),
            ("cold", lambda: measure_cold(fakes, home, pycache, plan, rng, results)),
            ("worker", lambda: measure_worker(fakes, home, pycache, plan, results)),
            ("stream", lambda: measure_stream(pycache, plan, results, own_file=args.output is None)),
            ("package", lambda: measure_package(fakes, home, work, plan, rng, results)),
        )
        try:
            for name, step in steps:
                if name in sections:
                    step_started = time.perf_counter()
                    print(f"[bench] {name}…", file=sys.stderr, flush=True)
                    step()
                    print(f"[bench] {name} done in {time.perf_counter() - step_started:.0f} s", file=sys.stderr)
        except (BenchError, ServeError) as error:
            print(f"[bench] error: {error}", file=sys.stderr)
            for log in sorted(logs.glob("*.log")):
                tail = log.read_text()[-2000:]
                if tail.strip():
                    print(f"--- {log.name}\n{tail}", file=sys.stderr)
            return 1
    results.seconds = time.perf_counter() - started
    results.load.append(os.getloadavg())
    report = render(results, command)
    print(report)
    if args.output != "-":
        output = RESULTS if args.output is None else Path(args.output).resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report)
        print(f"[bench] written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
