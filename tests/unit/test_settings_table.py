"""The README's settings table is the one in chalicelib/settings.py (scripts/settings_table.py, `make docs`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.settings import VARIABLES
from tests.conftest import ROOT, import_script

table = import_script("settings_table")


def test_the_readme_shows_the_settings_table_as_the_code_has_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert table.current(readme) == table.render(), (
        "README.md's settings table differs from chalicelib/settings.py: run `make docs`"
    )


def test_one_row_per_variable_and_no_secret_shows_a_value() -> None:
    rows = table.render().splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{variable.name}`" for variable in VARIABLES]
    secrets = [variable for variable in VARIABLES if variable.secret]
    assert {variable.name for variable in secrets} == {"SLACK_SIGNING_SECRET", "OPENAI_API_KEY", "SLACK_BOT_TOKEN"}
    assert all(table.shown_default(variable) == "unset" for variable in secrets)
    assert all(variable.doc and "\n" not in variable.doc for variable in VARIABLES)  # one line each


def test_defaults_are_shown_as_the_code_has_them() -> None:
    shown = {variable.name: table.shown_default(variable) for variable in VARIABLES}
    assert shown["OPENAI_TIMEOUT_SECONDS"] == "`60`"
    assert shown["OPENAI_TEMPERATURE"] == "`0.9`"
    assert shown["LOG_MESSAGE_TEXT"] == "`false`"
    assert shown["OPENAI_MODEL"] == "`gpt-4.1-mini`"
    assert shown["SYSTEM_PROMPT"] == "豆香's persona"


def test_write_replaces_only_the_table_and_check_says_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nBefore.\n\n<!-- settings:start -->\n| old |\n<!-- settings:end -->\n\nAfter.\n")
    assert table.main(["--check"], readme) == 1
    assert "run `make docs`" in capsys.readouterr().err
    assert table.main(["--write"], readme) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nBefore.\n\n<!-- settings:start -->\n| Variable | Default | Function |")
    assert text.endswith("|\n<!-- settings:end -->\n\nAfter.\n") and "| old |" not in text
    assert table.main(["--check"], readme) == 0
    assert table.main(["--write"], readme) == 0 and readme.read_text() == text  # idempotent


def test_a_readme_without_the_markers_is_said_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    assert table.main(["--write"], readme) == 1
    assert capsys.readouterr().err.startswith("error: README.md needs the lines <!-- settings:start -->")
    assert readme.read_text() == "# Title\n"
