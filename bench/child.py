"""The process that hosts one system under test; ``run.py`` starts it, one per measurement.

Contract: ``python bench/child.py MODE --app-dir DIR --module NAME --function-name NAME ...``
imports ``NAME`` from ``DIR`` (put first on ``sys.path``, as Lambda puts ``/var/task``),
uses its Chalice object as the Lambda handler, and reports on the file descriptor that was
its stdout, one JSON object per line. The app's own stdout (its log lines) goes to
``/dev/null``; its stderr is left to the parent. Modes:

- ``cold``: read one event (JSON) from stdin, then import the app and handle the event
  (``app`` for ``--kind http``, ``worker`` for ``--kind worker``); report both times, and
  ``time.monotonic()`` when the import started.
- ``warm``: import the app, then serve commands from stdin: ``run N`` handles N freshly
  signed events for ``--route`` (``slash``, the default: slash commands to
  ``/slack/commands``; ``events``: ``app_mention`` envelopes to ``/slack/events``) and
  reports each handler call's duration in ns, wall clock and this thread's CPU time (which
  leaves out waiting for the fake and being preempted); ``quit`` or EOF ends the process.
- ``profile``: import the app, warm it up, and report a cProfile of ``--requests`` events
  for ``--route`` as text (``{"text": ...}``).
- ``worker``: import the app and run ``--warmup`` then ``--jobs`` jobs through its worker
  handler against the fake OpenAI and response_url servers (``--openai-url``,
  ``--slack-url``); report each job's duration and the time the fakes spent on each
  request (read from their ``/_stats``: ``devkit.http_fake``).

Only ``os``, ``sys`` and ``time`` (loaded by every interpreter at startup) and ``__future__``
(which every app here imports too) are imported before the timed import, so nothing this
harness imports makes an app's import look cheaper.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # `typing` is not imported at run time: see the module docstring
if TYPE_CHECKING:
    from typing import Any, TextIO

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def main(argv: list[str]) -> int:
    mode, options = argv[0], _options(argv[1:])
    results = _results_channel()
    if mode == "cold":
        event_text = sys.stdin.read()  # before the clock starts: reading the pipe is not the app's cost
        return _cold(results, options, event_text)
    if mode == "warm":
        return _warm(results, options)
    if mode == "worker":
        return _worker(results, options)
    if mode == "profile":
        return _profile(results, options)
    raise SystemExit(f"unknown mode {mode!r}")


def _options(args: list[str]) -> dict[str, str]:
    if len(args) % 2:
        raise SystemExit("options come in --name value pairs")
    return {args[i].removeprefix("--"): args[i + 1] for i in range(0, len(args), 2)}


def _results_channel() -> TextIO:
    """The original stdout, for reports; fd 1 itself now goes to /dev/null for the app's logs."""
    results = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return results


def _import_app(options: dict[str, str]) -> tuple[Any, float]:
    sys.path[0] = options["app-dir"]  # replaces this script's directory, as /var/task heads Lambda's path
    started = time.perf_counter()
    __import__(options["module"])
    elapsed = time.perf_counter() - started
    return sys.modules[options["module"]], elapsed


def _events() -> Any:
    """``bench/events.py``, loaded by path: this directory is not on ``sys.path``, so nothing here
    can shadow the app's modules, and no installed ``events`` can stand in for it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_mameka_bench_events", os.path.join(BENCH_DIR, "events.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _event_builder(events: Any, options: dict[str, str]) -> Any:
    """``(secret, text) -> event`` for the route under test."""
    route = options.get("route", "slash")
    if route == "slash":
        return events.slash_command_event
    if route == "events":
        return events.app_mention_event
    raise SystemExit(f"unknown route {route!r}")


def _report(results: TextIO, data: dict[str, Any]) -> None:
    import json

    results.write(json.dumps(data) + "\n")
    results.flush()


def _cold(results: TextIO, options: dict[str, str], event_text: str) -> int:
    # On the monotonic clock every process shares (CLOCK_MONOTONIC on Linux): bench/stream.py
    # compares it with the times its fake Slack saw calls.
    import_started_at = time.monotonic()
    module, import_seconds = _import_app(options)
    import json

    LambdaContext = _events().LambdaContext

    event = json.loads(event_text)
    kind = options.get("kind", "http")
    context = LambdaContext(options["function-name"], timeout_seconds=120.0 if kind == "worker" else 10.0)
    handler = module.app if kind == "http" else getattr(module, options.get("handler", "worker"))
    started = time.perf_counter()
    response = handler(event, context)
    first_seconds = time.perf_counter() - started
    ok = kind != "http" or response.get("statusCode") == 200
    app_dir = os.path.abspath(options["app-dir"]) + os.sep
    from_app_dir = [m for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(app_dir)]
    _report(
        results,
        {
            "import_ms": import_seconds * 1000,
            "first_ms": first_seconds * 1000,
            "import_started_at": import_started_at,
            "ok": ok,
            "status": response.get("statusCode") if isinstance(response, dict) else None,
            "modules": len(sys.modules),
            "modules_from_app_dir": len(from_app_dir),
            "packages_from_app_dir": sorted({m.__name__.split(".")[0] for m in from_app_dir}),
        },
    )
    return 0 if ok else 1


def _warm(results: TextIO, options: dict[str, str]) -> int:
    module, import_seconds = _import_app(options)
    events = _events()
    TEXTS, LambdaContext, signed_event = events.TEXTS, events.LambdaContext, _event_builder(events, options)

    handler = module.app
    secret = os.environ["SLACK_SIGNING_SECRET"]
    _report(results, {"ready": True, "import_ms": import_seconds * 1000})
    served = 0
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        count = int(command[1])
        # Fresh signatures for each batch (the window is 5 minutes), made before the clock runs.
        inputs = [
            (signed_event(secret, TEXTS[(served + i) % len(TEXTS)]), LambdaContext(options["function-name"]))
            for i in range(count)
        ]
        durations: list[int] = []
        cpu: list[int] = []
        failures = 0
        first_failure = None
        for event, context in inputs:
            cpu_started = time.thread_time_ns()
            started = time.perf_counter_ns()
            response = handler(event, context)
            durations.append(time.perf_counter_ns() - started)
            cpu.append(time.thread_time_ns() - cpu_started)
            if response.get("statusCode") != 200:
                failures += 1
                first_failure = first_failure or response
        served += count
        _report(results, {"ns": durations, "cpu_ns": cpu, "failures": failures, "first_failure": first_failure})
    return 0


def _profile(results: TextIO, options: dict[str, str]) -> int:
    module, _ = _import_app(options)
    import cProfile
    import io
    import pstats

    events = _events()
    TEXTS, LambdaContext, signed_event = events.TEXTS, events.LambdaContext, _event_builder(events, options)

    secret = os.environ["SLACK_SIGNING_SECRET"]
    count = int(options.get("requests", "2000"))
    inputs = [
        (signed_event(secret, TEXTS[i % len(TEXTS)]), LambdaContext(options["function-name"]))
        for i in range(200 + count)
    ]
    for event, context in inputs[:200]:  # warm-up: clients, pools and caches, as in a warm container
        module.app(event, context)
    profiler = cProfile.Profile()
    profiler.enable()
    for event, context in inputs[200:]:
        module.app(event, context)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(45)
    # The app's own functions, and the client call they make, whatever their rank above.
    stats.sort_stats("cumulative").print_stats(
        r"chalicelib|/app\.py|bare_app|bolt_app|slack_bolt|client\.py.*_api_call", 80
    )
    _report(results, {"text": text.getvalue()})
    return 0


def _worker(results: TextIO, options: dict[str, str]) -> int:
    module, import_seconds = _import_app(options)
    import json
    import urllib.request

    events = _events()
    TEXTS, LambdaContext, worker_event = events.TEXTS, events.LambdaContext, events.worker_event

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def seconds(url: str) -> list[float]:
        """The fake's time per request since the last call, which starts the count afresh."""
        with opener.open(url + "/_stats?reset=1", timeout=10) as response:
            return [request["seconds"] for request in json.loads(response.read())["requests"]]

    handler = getattr(module, options.get("handler", "worker"))
    slack_url, openai_url = options["slack-url"], options["openai-url"]
    warmup, jobs = int(options["warmup"]), int(options["jobs"])
    durations: list[int] = []
    for i in range(warmup + jobs):
        if i == warmup:
            seconds(slack_url)
            seconds(openai_url)
        event = worker_event(TEXTS[i % len(TEXTS)], f"{slack_url}/commands/T0BENCH01/{i}/bench")
        context = LambdaContext(options["function-name"], timeout_seconds=120.0, memory_mb=512)
        started = time.perf_counter_ns()
        handler(event, context)
        if i >= warmup:
            durations.append(time.perf_counter_ns() - started)
    _report(
        results,
        {
            "import_ms": import_seconds * 1000,
            "ns": durations,
            "openai_server_seconds": seconds(openai_url),
            "slack_server_seconds": seconds(slack_url),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
