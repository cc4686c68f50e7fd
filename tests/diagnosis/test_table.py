"""The docs' rule table is written from the rules' own thresholds, one row per rule."""

import importlib
import re
from pathlib import Path

from trainer import diagnosis
from trainer.diagnosis import table, thresholds


def test_every_rule_has_one_row_and_every_row_a_rule():
    source = "".join(path.read_text() for path in Path(diagnosis.__file__).parent.glob("*.py"))
    emitted = set(re.findall(r'Finding\(\s*"([a-z_]+)"', source))
    described = [rule for row in table.ROWS for rule in row.rules]
    assert len(described) == len(set(described))
    assert set(described) == emitted


def test_the_table_follows_the_thresholds(monkeypatch):
    assert "update ratio > 0.01 sustained (80% of the recent window)" in table.markdown()
    monkeypatch.setattr(thresholds, "RATIO_HIGH", 0.02)
    monkeypatch.setattr(thresholds, "DEAD_WARNING", 0.35)
    try:
        rows = importlib.reload(table).markdown()
        assert "update ratio > 0.02 sustained" in rows
        assert "never positive over a batch >= 35%" in rows
    finally:
        monkeypatch.undo()
        importlib.reload(table)
    assert "update ratio > 0.01 sustained" in table.markdown()
