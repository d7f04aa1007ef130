"""``chalice local`` as a real subprocess for end-to-end tests, on a free loopback port.

When the server has stopped after a body that did not fail, its whole log is searched for the
secrets the tests use and those it was given (``tests/conftest.py``): one found fails the test.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT, TEST_SECRETS, secrets_in, secrets_in_environment


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90) -> None:
    """Poll until something accepts connections on ``port``; fail with ``log`` if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"chalice local did not listen:\n{log.read_text()}"
            time.sleep(0.1)


@contextlib.contextmanager
def running(env: dict[str, str], log: Path, startup_timeout: float = 90) -> Iterator[str]:
    """Run ``chalice local --stage dev`` with ``env``, output to ``log``; yield its base URL."""
    port = free_port()
    chalice = str(Path(sys.executable).parent / "chalice")
    command = [chalice, "local", "--stage", "dev", "--host", "127.0.0.1", "--port", str(port), "--no-autoreload"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_listening(process, port, log, startup_timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    # Not in `finally`: a failure inside the body is the one to report.
    leaked = secrets_in(log.read_text(errors="replace"), {*TEST_SECRETS, *secrets_in_environment(env)})
    assert not leaked, f"secrets hygiene: chalice local's log ({log}) shows {', '.join(leaked)}"
