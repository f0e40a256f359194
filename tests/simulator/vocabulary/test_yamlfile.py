"""YAML read with the line of every key."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.vocabulary.errors import ScenarioError
from simulator.vocabulary.yamlfile import load_located

TEXT = """\
name: x
suppliers:

  count: 3
steps:
  - produce:
      chains: 1
"""


def test_a_key_with_a_block_below_is_at_its_own_line(tmp_path: Path) -> None:
    """A key whose value is a block on later lines is located where the key is written."""
    path = tmp_path / "s.yaml"
    path.write_text(TEXT, encoding="utf-8")
    data, lines = load_located(path)
    assert data["suppliers"] == {"count": 3}
    assert lines[("suppliers",)] == 2
    assert lines[("suppliers", "count")] == 4
    assert lines[("steps", 0)] == 6
    assert lines[("steps", 0, "produce")] == 6
    assert lines[("steps", 0, "produce", "chains")] == 7


def test_duplicate_key_names_its_line(tmp_path: Path) -> None:
    """A key written twice is refused at the second one."""
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nname: y\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"s\.yaml:2: key 'name' appears twice"):
        load_located(path)
