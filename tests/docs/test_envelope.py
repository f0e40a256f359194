"""docs/envelope.md: the envelope id rule it states reproduces the ICC's envelope ids."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from icc_bridge import envelope_id_for

ENVELOPE_DOC = Path(__file__).resolve().parents[2] / "docs" / "envelope.md"
#: ``envelope_id = uuid5(<namespace>, b2b-message-id)`` as the document writes the rule.
RULE = re.compile(r"envelope_id = uuid5\(([0-9a-f-]{36}), b2b-message-id\)")
#: The worked example: ``message id `…` gives envelope id `…` ``.
EXAMPLE = re.compile(r"message id `([^`]+)`\s+gives the envelope id `([0-9a-f-]{36})`")


@pytest.fixture(scope="module")
def text() -> str:
    return ENVELOPE_DOC.read_text(encoding="utf-8")


def test_the_documented_rule_gives_the_icc_envelope_id(text: str) -> None:
    """uuid5 of the documented namespace and the message id is what icc_bridge computes."""
    (namespace,) = RULE.findall(text)
    for message_id in ("3f1c2a9e-8d4b-4e57-9a61-0c2d7b5e4f10", "m1", "någon-id ü"):
        assert str(uuid.uuid5(uuid.UUID(namespace), message_id)) == envelope_id_for(message_id)


def test_the_worked_example_is_right(text: str) -> None:
    """The example in the document is a real pair."""
    examples = EXAMPLE.findall(text)
    assert examples
    for message_id, envelope_id in examples:
        assert envelope_id_for(message_id) == envelope_id
        assert uuid.UUID(envelope_id).version == 5


def test_the_id_is_not_called_random(text: str) -> None:
    """The envelope id is not a uuid4 (a random id would make every retry a new envelope)."""
    (row,) = [line for line in text.splitlines() if line.startswith("| `envelope_id`")]
    assert "uuid4" not in row
    assert "version-5" in row
