"""README documents every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.settings import documented_variables

README = Path(__file__).resolve().parents[2] / "README.md"


def settings_table() -> dict[str, str]:
    rows = re.findall(r"^\| `(PIPELINE_[A-Z_]+)` \| (.+?) \|", README.read_text(), flags=re.M)
    return dict(rows)


def test_every_setting_is_documented_with_its_default():
    table = settings_table()
    for name, default in documented_variables():
        assert name in table, f"{name} missing from README's settings table"
        shown = table[name]
        if default:
            assert shown == f"`{default}`", f"{name}: README says {shown}, code says {default!r}"
        else:
            assert shown.startswith("*("), f"{name}: README says {shown}, code has no default"


def test_readme_lists_no_setting_the_code_does_not_have():
    assert set(settings_table()) == {name for name, _ in documented_variables()}


def test_readme_starts_with_the_two_commands():
    head = README.read_text()[:600]
    assert "make demo" in head and "make test" in head
