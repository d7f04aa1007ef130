"""Add compiled bytecode to a Chalice deployment zip, so that Lambda cold starts stop compiling.

    python scripts/compile_bytecode.py [--invalidation-mode unchecked-hash|checked-hash]
                                       [--runtime python3.12] ZIP [ZIP ...]

Why: Chalice zips ``.py`` files only, and ``/var/task`` is read-only, so at every cold start
Python compiles every module it imports (openai alone is hundreds) and cannot cache the
result. With ``__pycache__/*.pyc`` in the zip it loads them instead.

Contract: each ZIP is rewritten in place (atomically, via a temporary file beside it) so that
every ``.py`` in it has ``__pycache__/<name>.<cache tag>.pyc`` next to it, compiled by this
interpreter at optimisation level 0, as a PEP 552 hash-based pyc (default
``unchecked-hash``: the source is never read to validate it, so file times, which Chalice
sets to 1980-01-01 in the zip, do not matter; ``checked-hash`` makes Python hash each source
at import instead). Any ``.pyc`` already in the zip is dropped first: Chalice ships whatever
stale ``chalicelib/__pycache__`` holds, and a timestamp pyc never matches those 1980 times.
Every other entry is copied unchanged; new entries get Chalice's fixed time and mode 0644,
so the same input gives the same bytes. A ``.py`` that does not compile under this Python
is left as source and named on stderr. A zip already processed with the same cache tag and
mode (recorded in the zip comment) is left alone.

The bytecode is only usable by the same Python minor version, so this must run under the
interpreter that Chalice took the Lambda runtime from (the project's venv). The runtime is
checked against ``--runtime``, else against the ``-pythonX.Y`` in Chalice's cached zip name
or the ``Runtime`` in a ``sam.json`` beside the zip; a mismatch is an error (exit 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import marshal
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path

LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the zip; only used for names in tracebacks
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # Chalice's fixed entry time (chalice.utils.ChaliceZipFile)
FILE_MODE = 0o100644
MODES = {"unchecked-hash": 0b01, "checked-hash": 0b11}  # PEP 552 flags: hash-based, check_source
CHALICE_ZIP_NAME = re.compile(r"-python(\d+)\.(\d+)(?:-[a-z0-9_]+)?\.zip$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zips", nargs="+", type=Path, metavar="ZIP")
    parser.add_argument("--invalidation-mode", choices=sorted(MODES), default="unchecked-hash")
    parser.add_argument("--runtime", help="the Lambda runtime the zip is for, e.g. python3.12")
    args = parser.parse_args(argv)
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for path in args.zips:
        runtime = args.runtime or expected_runtime(path)
        if runtime is not None and runtime != here:
            print(f"error: {path} is for {runtime}, but this is {here}: its bytecode would be ignored", file=sys.stderr)
            return 2
        added, skipped = add_bytecode(path, args.invalidation_mode)
        for name in skipped:
            print(f"warning: {name} does not compile under {here}; left as source", file=sys.stderr)
        print(f"{path}: {'already done' if added < 0 else f'added {added} .pyc'} ({args.invalidation_mode}, {here})")
    return 0


def expected_runtime(zip_path: Path) -> str | None:
    """The runtime the zip was built for, if its name or a ``sam.json`` beside it says."""
    match = CHALICE_ZIP_NAME.search(zip_path.name)
    if match:
        return f"python{match.group(1)}.{match.group(2)}"
    template = zip_path.with_name("sam.json")
    if template.is_file():
        resources = json.loads(template.read_text()).get("Resources", {})
        runtimes = {r.get("Properties", {}).get("Runtime") for r in resources.values() if isinstance(r, dict)}
        runtimes.discard(None)
        if len(runtimes) == 1:
            return runtimes.pop()
    return None


def add_bytecode(zip_path: Path, mode: str) -> tuple[int, list[str]]:
    """Rewrite ``zip_path`` with bytecode; returns (pyc added or -1 if already done, sources skipped)."""
    marker = f"compile_bytecode: {sys.implementation.cache_tag} {mode}".encode()
    with zipfile.ZipFile(zip_path) as source:
        if source.comment == marker:
            return -1, []
        entries = [(info, source.read(info)) for info in source.infolist() if not is_bytecode(info.filename)]
    compiled: dict[str, bytes] = {}
    skipped: list[str] = []
    for info, data in entries:
        if info.filename.endswith(".py"):
            try:
                compiled[cache_path(info.filename)] = hash_pyc(data, f"{LAMBDA_TASK_ROOT}/{info.filename}", mode)
            except (SyntaxError, ValueError):
                skipped.append(info.filename)
    fd, temporary = tempfile.mkstemp(dir=zip_path.parent, prefix=zip_path.name, suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as target:
            for info, data in entries:
                target.writestr(info, data)
            for name in sorted(compiled):
                entry = zipfile.ZipInfo(name, ZIP_TIME)
                entry.external_attr = FILE_MODE << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(entry, compiled[name])
            target.comment = marker
        os.chmod(temporary, zip_path.stat().st_mode & 0o777)  # mkstemp made it 0600
        os.replace(temporary, zip_path)
    except BaseException:
        os.unlink(temporary)
        raise
    return len(compiled), skipped


def is_bytecode(name: str) -> bool:
    return name.endswith((".pyc", ".pyo")) and ("/__pycache__/" in name or name.startswith("__pycache__/"))


def cache_path(source_name: str) -> str:
    """``pkg/mod.py`` -> ``pkg/__pycache__/mod.cpython-312.pyc`` (what the import system looks for)."""
    directory, _, filename = source_name.rpartition("/")
    pyc = f"__pycache__/{filename[:-3]}.{sys.implementation.cache_tag}.pyc"
    return f"{directory}/{pyc}" if directory else pyc


def hash_pyc(source: bytes, filename: str, mode: str) -> bytes:
    """A PEP 552 hash-based pyc of ``source``, as ``py_compile`` would write it, built in memory."""
    code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
    header = importlib.util.MAGIC_NUMBER + MODES[mode].to_bytes(4, "little") + importlib.util.source_hash(source)
    return header + marshal.dumps(code)


if __name__ == "__main__":
    sys.exit(main())
