"""Serve devkit's fakes in a process of their own: ``python -m devkit.serve KIND [KIND ...]``.

Contract: it starts one ``devkit.http_fake.FakeServer`` per KIND on a free 127.0.0.1 port,
prints one JSON line ``{KIND: url, ...}`` on stdout, and serves until its stdin reaches EOF
(or a line ``quit`` arrives) or ``MAX_LIFETIME_SECONDS`` pass; then it stops them all and
exits 0. Kinds (``KINDS``):

- ``lambda``: ``devkit.fake_lambda`` (202 to every invoke);
- ``response_url``: ``devkit.fake_response_url`` (``ok``, as Slack answers a reply);
- ``openai-instant``: ``devkit.fake_openai`` answering "x" at once, whole or streamed in one
  write, so that the fake's own time is as small as a server's can be;
- ``openai-paced``: ``devkit.fake_openai.paced_llm``, the benchmark's answers at a model's pace.

Each answers ``GET /_stats`` (see ``devkit.http_fake``): what it served and how long each
took, so that a client can subtract the fake's own time from what it measured.

From the parent's side, ``Served(*kinds)`` starts that process (the repository root as its
working directory, so ``devkit`` imports), reads its URLs (``urls``; ``ServeError`` if none
come within 30 s), reads a fake's ``stats(kind, reset)``, and ``close()`` (or ``with``) stops
it: ``quit``, then a kill if it has not exited within 10 s. ``read_line`` and ``stop`` do
the same for any child that speaks one JSON line at a time. A process of
their own keeps the fakes' work off the measured process's GIL, and a paced stream's pace
off it too, as a real LLM's would be. Standard library only, so that nothing it imports
bends the numbers of the processes it serves.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from devkit.fake_lambda import fake_lambda
from devkit.fake_openai import answering, fake_openai, paced_llm
from devkit.fake_response_url import fake_response_url
from devkit.http_fake import FakeServer

MAX_LIFETIME_SECONDS = 1800.0
ROOT = Path(__file__).resolve().parent.parent
KINDS: dict[str, Callable[[], FakeServer]] = {
    "lambda": fake_lambda,
    "response_url": fake_response_url,
    "openai-instant": lambda: fake_openai(answering("x")),
    "openai-paced": lambda: fake_openai(paced_llm),
}


def main(argv: list[str]) -> int:
    unknown = [kind for kind in argv if kind not in KINDS]
    if not argv or unknown:
        print(f"usage: python -m devkit.serve KIND [KIND ...]; kinds: {', '.join(KINDS)}", file=sys.stderr)
        return 2
    told = threading.Event()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
        told.set()

    with ExitStack() as stack:
        urls = {}
        for kind in dict.fromkeys(argv):
            server = KINDS[kind]()
            server.keep_received = False  # a benchmark's tens of thousands of requests: only their Records
            urls[kind] = stack.enter_context(server).url
        sys.stdout.write(json.dumps(urls) + "\n")
        sys.stdout.flush()
        threading.Thread(target=watch_stdin, daemon=True).start()
        told.wait(MAX_LIFETIME_SECONDS)
    return 0


class ServeError(RuntimeError):
    """The fakes' process did not start."""


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """One line of a child's stdout, killing the child if none comes in ``timeout`` seconds; "" if it ended."""
    assert process.stdout is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        return process.stdout.readline()
    finally:
        timer.cancel()


def stop(process: subprocess.Popen[str]) -> None:
    """Ask a child to end (``quit``, then end of input), and kill it if it has not within 10 s."""
    if process.poll() is None:
        try:
            if process.stdin:
                process.stdin.write("quit\n")
                process.stdin.close()
            process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(10)


class Served:
    """``python -m devkit.serve KIND...`` as a child process; see the module docstring."""

    def __init__(self, *kinds: str, python: str = sys.executable) -> None:
        self.process = subprocess.Popen(
            [python, "-m", "devkit.serve", *kinds], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        line = read_line(self.process, 30.0)
        if not line:
            stop(self.process)
            raise ServeError(f"python -m devkit.serve {' '.join(kinds)} did not start (exit {self.process.poll()})")
        self.urls: dict[str, str] = json.loads(line)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for loopback

    def stats(self, kind: str, reset: bool = False) -> dict[str, Any]:
        url = f"{self.urls[kind]}/_stats" + ("?reset=1" if reset else "")
        with self._opener.open(url, timeout=10) as response:
            return json.loads(response.read())

    def close(self) -> None:
        stop(self.process)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
