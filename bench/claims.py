"""The claim store's cost: the worker's cold imports with and without it, and its time per job.

    .venv/bin/python bench/claims.py             # about 30 s
    .venv/bin/python bench/claims.py --quick     # a few seconds, for checking the harness

Contract: it prints a Markdown report and exits 0 (a measurement, not a test); it exits 1 if a
claim or a count does not behave (its numbers would then mean nothing). It measures

- cold imports, each in a fresh process (median of ``--cold`` runs, interleaved): the time from
  the first import to the worker being ready, measured inside the child, so the interpreter's
  own start is left out: ``chalicelib.worker`` alone (a local run: no AWS); with boto3's SSM
  client (the worker in Lambda reads its secrets from SSM, so it loads boto3 anyway); and with
  the DynamoDB client the claim store adds. With ``aws_lambda_powertools`` importable, also its
  Idempotency utility on top (the alternative the issue asked to weigh);
- the time per job of the claim (``DynamoClaims.claim`` on a message job's two keys, one
  ``TransactWriteItems``), of a refused claim (a duplicate), and of the per-user count
  (``limits.check``: one ``UpdateItem``), against moto's server on 127.0.0.1, next to the
  in-memory store's; each as a ratio to the worker's own time per job (``--job-ms``, 2.8 ms by
  the README's benchmark).

moto on loopback answers in about the time it takes to parse and serve a request in Python;
real DynamoDB's round trip from Lambda in the same region comes on top. Every loop is bounded,
every child has a timeout, and the server is stopped before it returns. Standard library,
boto3 and moto only; credentials are fake and nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

TABLE = "mameka-bench-claims"
REGION = "us-east-1"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# What each cold child does after ``started``: the worker module, then the clients it makes.
COLD_CASES = {
    "worker only (local: no AWS)": "import chalicelib.worker",
    "worker + SSM client (Lambda, without claims)": "import chalicelib.worker\naws.client('ssm')",
    "worker + SSM + DynamoDB clients (Lambda, with claims)": (
        "import chalicelib.worker\naws.client('ssm')\naws.client('dynamodb')"
    ),
    "... + powertools Idempotency imports": (
        "import chalicelib.worker\naws.client('ssm')\naws.client('dynamodb')\n"
        "from aws_lambda_powertools.utilities.idempotency import"
        " DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function"
    ),
}
# moto copies the whole table in every transaction (to roll it back on failure): on a table that
# grew with every call, the time would be moto's copy, not the claim. It is emptied this often
# (untimed), so that it holds at most a few dozen items, as a real table's partition would not notice.
RESET_EVERY = 25
CHILD = """
import json, sys, time
started = time.perf_counter()
from chalicelib import aws
{body}
print(json.dumps(round((time.perf_counter() - started) * 1000, 2)))
"""


def cold_imports(samples: int) -> dict[str, float | None]:
    """Median milliseconds per case; None for a case that cannot run here (powertools not installed)."""
    # PYTHONPATH kept after the project: a scratch install of powertools can be measured without
    # adding it to the venv (PYTHONPATH=/tmp/powertools .venv/bin/python bench/claims.py).
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, **FAKE_AWS, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    for name in list(env):
        if name.startswith("AWS_ENDPOINT_URL"):
            del env[name]
    times: dict[str, list[float]] = {case: [] for case in COLD_CASES}
    skipped: set[str] = set()
    for _ in range(samples):
        cases = [case for case in COLD_CASES if case not in skipped]
        random.shuffle(cases)  # machine noise hits every case alike
        for case in cases:
            result = subprocess.run(
                [sys.executable, "-c", CHILD.format(body=COLD_CASES[case])],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=60,
            )
            if result.returncode != 0:
                if "aws_lambda_powertools" in result.stderr:
                    skipped.add(case)
                    continue
                raise SystemExit(f"cold child failed: {case}\n{result.stderr[-2000:]}")
            times[case].append(float(result.stdout.strip()))
    return {case: statistics.median(values) if values else None for case, values in times.items()}


def per_call_ms(
    call: Callable[[int], object], count: int, reset: Callable[[], object] | None = None
) -> tuple[float, float]:
    """Median and p95 milliseconds of ``call(i)`` for i in 0..count-1; ``reset()``, untimed, every ``RESET_EVERY``."""
    times = []
    for i in range(count):
        if reset is not None and i % RESET_EVERY == 0:
            reset()
        started = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]


def warm_calls(count: int) -> dict[str, tuple[float, float]]:
    import boto3
    from moto.server import ThreadedMotoServer

    from chalicelib import aws, claims, limits
    from chalicelib.settings import Settings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request would time stderr too
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        os.environ.update(FAKE_AWS)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = url  # chalicelib.aws's client talks to moto only
        aws.client.cache_clear()
        client = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)

        def new_table() -> None:
            if TABLE in client.list_tables()["TableNames"]:
                client.delete_table(TableName=TABLE)
            client.create_table(
                TableName=TABLE,
                KeySchema=[{"AttributeName": claims.KEY_ATTRIBUTE, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": claims.KEY_ATTRIBUTE, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )

        new_table()
        store = claims.store(Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "bench", "IDEMPOTENCY_TABLE": TABLE}))
        assert isinstance(store, claims.DynamoClaims)
        limited = Settings.from_env(
            {"AWS_LAMBDA_FUNCTION_NAME": "bench", "IDEMPOTENCY_TABLE": TABLE, "USER_RATE_LIMIT_PER_MINUTE": "1000000"}
        )
        memory = claims.MemoryClaims()

        def claim(i: int) -> None:
            if not store.claim([f"Ev{i:08d}", f"C1:1700000000.{i:06d}"]):
                raise SystemExit("a fresh claim was refused")

        def refused(i: int) -> None:
            if store.claim([f"Ev-dup{i:08d}", "C1:1700000000.held"]):
                raise SystemExit("a duplicate was claimed")

        def new_table_with_a_claim() -> None:
            new_table()
            if not store.claim(["Ev-held", "C1:1700000000.held"]):
                raise SystemExit("a fresh claim was refused")

        def count_question(i: int) -> None:
            if limits.check(limited, "T1", f"U{i % 50}") is not None:
                raise SystemExit("a count under the limit was refused")

        def in_memory(i: int) -> None:
            memory.claim([f"Ev{i:08d}", f"C1:1700000000.{i:06d}"])

        per_call_ms(lambda i: claim(1_000_000 + i), 20, new_table)  # warm up: the connection, botocore's caches
        per_call_ms(count_question, 20)
        return {
            "claim (2 keys, one TransactWriteItems)": per_call_ms(claim, count, new_table),
            "refused claim (a duplicate)": per_call_ms(refused, count, new_table_with_a_claim),
            "per-user count (UpdateItem ADD)": per_call_ms(count_question, count, new_table),
            "claim in memory (MemoryClaims)": per_call_ms(in_memory, count),
        }
    finally:
        server.stop()
        listener = getattr(server, "_server", None)
        if listener is not None:
            listener.server_close()


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value >= 0.1 else f"{value * 1000:.0f} µs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples: a check of the harness")
    parser.add_argument("--cold", type=int, default=15, help="fresh processes per cold case (default 15)")
    parser.add_argument("--calls", type=int, default=300, help="calls per warm case (default 300)")
    parser.add_argument("--job-ms", type=float, default=2.8, help="the worker's own time per job (README: 2.8 ms)")
    args = parser.parse_args()
    cold_samples, calls = (3, 30) if args.quick else (max(1, min(args.cold, 100)), max(10, min(args.calls, 5000)))

    cold = cold_imports(cold_samples)
    warm = warm_calls(calls)

    lines = [
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; {cold_samples} cold processes per case,"
        f" {calls} warm calls per case.",
        "",
        "| cold start of the worker (imports and clients, in the child) | median | vs without claims |",
        "| --- | ---: | ---: |",
    ]
    base = cold["worker + SSM client (Lambda, without claims)"]
    for case, ms in cold.items():
        if ms is None:
            lines.append(f"| {case} | not installed | |")
            continue
        delta = "" if base is None or case.startswith("worker only") else f"{ms - base:+.0f} ms"
        lines.append(f"| {case} | {ms:.0f} ms | {delta} |")
    lines += [
        "",
        f"| per job, against moto on 127.0.0.1 | median | p95 | median / the job's own {args.job_ms:g} ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case, (median, p95) in warm.items():
        lines.append(f"| {case} | {_ms(median)} | {_ms(p95)} | {median / args.job_ms:.3g}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
