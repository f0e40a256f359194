"""Load YAML while remembering where each value came from.

Scenario errors must name the file and the line.  PyYAML's composer gives
nodes with marks; :func:`load_located` turns them into plain Python values
and a map from each value's path (a tuple of keys and indexes) to its line:
the line where its key is written (for a list item, where the item begins),
so that a key with a block below it is named at its own line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from simulator.vocabulary.errors import ScenarioError

Location = tuple[str | int, ...]


def load_located(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse ``path``; return its data and the 1-based line of every value's key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(
            f"{path}: no such scenario file", hint="`b2bsim scenario list` shows the library"
        ) from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text", hint="save the file as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(
            f"{path}{line}: YAML syntax error: {problem}",
            hint="check indentation and quoting on that line",
        ) from None
    lines: dict[Location, int] = {}
    if node is None:
        return None, lines
    return _convert(node, (), lines, path), lines


def _convert(node: yaml.Node, at: Location, lines: dict[Location, int], path: Path) -> Any:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key_node, yaml.ScalarNode) or not isinstance(key, str):
                raise ScenarioError(
                    f"{path}:{key_node.start_mark.line + 1}: keys must be plain strings",
                    hint="write `key: value`",
                )
            if key in out:
                raise ScenarioError(
                    f"{path}:{key_node.start_mark.line + 1}: key {key!r} appears twice",
                    hint="keep one",
                )
            lines[(*at, key)] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, (*at, key), lines, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*at, i), lines, path) for i, item in enumerate(node.value)]
    # A scalar, its tag resolved by the composer (an empty value is null, not an error).
    return yaml.constructor.SafeConstructor().construct_object(node)
