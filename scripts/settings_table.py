"""The README's settings table, generated from the one table in ``chalicelib/settings.py``. Not deployed.

    python scripts/settings_table.py            # print the table
    python scripts/settings_table.py --write    # rewrite it in README.md (`make docs`)
    python scripts/settings_table.py --check    # exit 1 if README.md's table is not the generated one

Contract:

- One row per ``chalicelib.settings.VARIABLES`` entry, in its order, with the columns
  Variable, Default, Function (HTTP, worker or both) and What it does (the row's one line
  of doc).
- The default is the row's ``shown`` text, or else the field's default (``unset`` for None).
  A secret's row shows only that: the script reads no environment, so no value can appear.
- ``--write`` replaces exactly what lies between ``<!-- settings:start -->`` and
  ``<!-- settings:end -->`` in README.md and leaves the rest as it is; ``--check`` compares
  the same part. Exit 0 done, 1 README.md differs (``--check``) or lacks the markers, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for chalicelib, when run as `python scripts/...`

from chalicelib.settings import API, VARIABLES, WORKER, Variable  # noqa: E402

README = ROOT / "README.md"
START = "<!-- settings:start -->"
END = "<!-- settings:end -->"
FIX = "make docs"  # the command that rewrites README.md's table
FUNCTION_NAMES = {API: "HTTP", WORKER: "worker"}


class TableError(RuntimeError):
    """README.md cannot take the table (its markers are missing or out of order)."""


def shown_default(variable: Variable) -> str:
    """The default as the README shows it; a secret never has one to show."""
    if variable.secret and variable.default is not None:
        raise ValueError(f"{variable.name} is a secret: it may have no default")
    if variable.shown is not None:
        return variable.shown
    value = variable.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, frozenset):
        value = ",".join(sorted(value))
    return f"`{value}`"


def functions(variable: Variable) -> str:
    if variable.functions == {API, WORKER}:
        return "both"
    return ", ".join(FUNCTION_NAMES[function] for function in sorted(variable.functions))


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The whole table, header included, one row per variable."""
    lines = ["| Variable | Default | Function | What it does |", "| --- | --- | --- | --- |"]
    for variable in VARIABLES:
        row = (f"`{variable.name}`", shown_default(variable), functions(variable), variable.doc)
        lines.append("| " + " | ".join(cell(text) for text in row) + " |")
    return "\n".join(lines) + "\n"


def _bounds(readme: str) -> tuple[int, int]:
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise TableError(f"README.md needs the lines {START} and {END}, in that order, around the settings table")
    return start + len(START), end


def current(readme: str) -> str:
    """README's table as it stands: what lies between the markers, blank lines around it dropped."""
    start, end = _bounds(readme)
    return readme[start:end].strip("\n") + "\n"


def with_table(readme: str, table: str) -> str:
    """``readme`` with ``table`` between the markers."""
    start, end = _bounds(readme)
    return readme[:start] + "\n" + table + readme[end:]


def main(argv: list[str], readme_path: Path = README) -> int:
    parser = argparse.ArgumentParser(description="The README's settings table, from chalicelib/settings.py.")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    action.add_argument("--check", action="store_true", help="exit 1 if README.md's table is not this one")
    options = parser.parse_args(argv)
    table = render()
    if not (options.write or options.check):
        sys.stdout.write(table)
        return 0
    readme = readme_path.read_text()
    try:
        if options.check:
            if current(readme) == table:
                return 0
            print(f"error: README.md's settings table is out of date: run `{FIX}`", file=sys.stderr)
            return 1
        updated = with_table(readme, table)
    except TableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if updated != readme:
        readme_path.write_text(updated)
        print(f"rewrote the settings table in {readme_path.name}")
    else:
        print(f"{readme_path.name}'s settings table is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
