"""Let ``chalice local`` take a burst of commands the way API Gateway does.

Chalice's dev server listens with socketserver's default backlog of 5, so 50 commands sent
at once get connection resets; API Gateway has no such limit. Contract:
``widen_backlog(environ)`` raises that backlog to ``BACKLOG`` when the app is loaded by the
Chalice CLI, and does nothing in Lambda (``settings.in_lambda(environ)``; ``chalice.local`` is
not even shipped there). It must run at import time: the CLI loads the app before it creates
the server.
"""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.settings import in_lambda

# At least the largest burst the load test sends at once (200 commands, then 200 mentions:
# tests/test_load.py): connections beyond the backlog wait in SYN retries (1 s, then 3 s...)
# or are reset, which a burst that API Gateway would take must not suffer. The kernel caps it
# at net.core.somaxconn (4096 on current Linux).
BACKLOG = 256


def widen_backlog(environ: Mapping[str, str]) -> None:
    if environ.get("AWS_CHALICE_CLI_MODE") != "true" or in_lambda(environ):
        return
    try:
        from chalice.local import ThreadedHTTPServer
    except ImportError:
        return
    ThreadedHTTPServer.request_queue_size = max(ThreadedHTTPServer.request_queue_size, BACKLOG)
