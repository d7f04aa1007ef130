"""The load test's client: send HTTP POSTs all at once and time each to its response.

It runs in a process of its own (``python -m tests.load_client``), as Slack is not inside
the server's host: in the test process, the fakes (busy answering 200 workers) would hold
the GIL and delay the client's threads, which would then measure the test, not the server.

Contract: reads from stdin a JSON list of ``{"url", "body" (base64), "headers"}``, opens one
connection per request on a thread of its own, releases them all at once (a barrier), and
prints one JSON object: ``{"started": <time.monotonic() at the release>, "results":
[{"status": <int, 0 if it failed>, "seconds": <to the whole response>, "error": <str|null>}]}``
in the order given. ``time.monotonic()`` is the system's clock, comparable across processes.
Each request has a 30 s timeout. Standard library only.
"""

from __future__ import annotations

import base64
import http.client
import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

TIMEOUT = 30.0


def main() -> None:
    requests: list[dict[str, Any]] = json.load(sys.stdin)
    barrier = threading.Barrier(len(requests) + 1)
    results: list[dict[str, Any]] = [{} for _ in requests]

    def send(i: int, request: dict[str, Any]) -> None:
        url = urlsplit(request["url"])
        body = base64.b64decode(request["body"])
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=TIMEOUT)
        barrier.wait(timeout=60)
        started = time.monotonic()
        try:
            connection.request("POST", url.path, body=body, headers=request["headers"])
            response = connection.getresponse()
            response.read()
            results[i] = {"status": response.status, "seconds": time.monotonic() - started, "error": None}
        except OSError as error:
            results[i] = {"status": 0, "seconds": time.monotonic() - started, "error": repr(error)}
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i, request)) for i, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=60)
    started = time.monotonic()
    for thread in threads:
        thread.join()
    json.dump({"started": started, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
