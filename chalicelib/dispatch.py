"""How a job travels from the HTTP function to the worker: the only module that knows.

Contract: ``dispatch(payload, settings, worker_environ)`` hands a job's payload (a JSON-ready
dict, opaque here: ``chalicelib.jobs`` knows what is in it) to the worker and returns at once,
or raises ``DispatchError``; it never waits for the answer.

- In AWS Lambda (``settings.in_lambda``) it invokes the worker function, named by
  ``WORKER_FUNCTION_NAME``, with ``InvocationType="Event"``; ``worker_environ`` is unused
  (a Lambda gets its configuration from its own environment).
- Anywhere else (``chalice local``, tests, scripts) it runs the same ``worker.run`` in a new
  thread of this process, with the job's payload round-tripped through JSON as Lambda
  would, a copy of ``worker_environ`` (the request's environment, as the entry point got it:
  ``chalice.test.Client`` swaps ``os.environ`` only during a call), which it hands over
  unread: the worker parses its own settings from it, as a Lambda does from its
  configuration; and a deadline of the worker's configured
  ``lambda_timeout`` counted from when the job starts. At most ``LOCAL_MAX_JOBS`` jobs run at
  once; more wait their turn in their threads (as throttled invocations wait in Lambda's
  queue): every job in Lambda has a machine of its own, where here they share this one's
  cores with the server that must acknowledge Slack within 3 seconds.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chalicelib import aws, container
from chalicelib.deadline import Deadline
from chalicelib.settings import Settings

logger = logging.getLogger(__name__)

WORKER = "worker"  # the worker's name in app.py, .chalice/config.json and the merge template
CHALICE_DEFAULT_TIMEOUT = 60
LOCAL_THREAD_PREFIX = "mameka-job"
LOCAL_MAX_JOBS = 32
_local_slots = threading.BoundedSemaphore(LOCAL_MAX_JOBS)
_thread_numbers = itertools.count(1)


class DispatchError(RuntimeError):
    """The job could not be handed to the worker."""


def dispatch(payload: dict[str, Any], settings: Settings, worker_environ: Mapping[str, str]) -> None:
    """Hand ``payload`` (a job's ``to_payload()``, opaque here) to the worker."""
    if settings.in_lambda:
        _invoke_worker(payload, settings.worker_function_name)
    else:
        # A copy, taken now: the request's environment may be gone once the thread runs.
        _start_local_worker(payload, dict(worker_environ))


def _invoke_worker(payload: dict[str, Any], function_name: str | None) -> None:
    if not function_name:
        logger.error("WORKER_FUNCTION_NAME is not set; cannot invoke the worker")
        raise DispatchError("WORKER_FUNCTION_NAME is not set")
    try:
        response = aws.client("lambda").invoke(
            FunctionName=function_name,
            InvocationType="Event",
            Payload=json.dumps(payload).encode(),
        )
        # Reading the empty body hands the connection back to the pool for the next request.
        response["Payload"].read()
    except Exception as error:
        reason = aws.error_code(error)
        logger.error("could not invoke worker %s: %s", function_name, reason)
        raise DispatchError(reason) from None
    if response.get("StatusCode") != 202:
        logger.error("worker invoke answered status %s", response.get("StatusCode"))
        raise DispatchError(f"invoke answered {response.get('StatusCode')}")


def _start_local_worker(payload: dict[str, Any], worker_environ: dict[str, str]) -> None:
    payload = json.loads(json.dumps(payload))  # what the worker gets in Lambda: JSON, not our objects

    def work() -> None:
        from chalicelib import worker  # here, not at the top: it imports openai

        with _local_slots:
            worker.run(payload, Deadline.in_seconds(local_worker_timeout()), worker_environ)

    # Not a daemon: a job in flight finishes even if the process is asked to exit.
    try:
        threading.Thread(target=work, name=f"{LOCAL_THREAD_PREFIX}-{next(_thread_numbers)}", daemon=False).start()
    except RuntimeError as error:  # "can't start new thread"
        logger.error("could not start a local worker thread: %s", error)
        raise DispatchError("no thread for the worker") from None


@container.cached()
def local_worker_timeout() -> float:
    """The worker's ``lambda_timeout`` from ``.chalice/config.json`` (stage-independent)."""
    config_path = Path(__file__).resolve().parent.parent / ".chalice" / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return CHALICE_DEFAULT_TIMEOUT
    worker_config = config.get("lambda_functions", {}).get(WORKER, {})
    return float(worker_config.get("lambda_timeout") or config.get("lambda_timeout") or CHALICE_DEFAULT_TIMEOUT)
