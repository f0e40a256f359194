"""Tests for simulator.views.step_words: every step of every scenario is a plain sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.runs.scenario import (
    Attack,
    Clock,
    IccFault,
    KillBroker,
    KillIcc,
    PkiChange,
    Poison,
    Produce,
    RestartBroker,
    Sleep,
    Step,
    SupplierFault,
    Wait,
    load_scenario,
)
from simulator.views.step_words import describe_step, step_text

LIBRARY = sorted((Path(__file__).resolve().parents[3] / "scenarios").glob("*.yaml"))

#: One step of every kind and variant the language has.
EVERY_KIND: list[Step] = [
    Produce(chains=2),
    Produce(doc_type="credit", count=1, rate=5, background=True),
    Wait(timeout=30),
    Sleep(seconds=1.5),
    KillIcc(times=3, every=1),
    KillIcc(after=10),
    RestartBroker(down=2),
    KillBroker(index=2, down=3),
    *(SupplierFault(kind=k, seconds=2) for k in ("down", "delay", "reset", "clear")),
    SupplierFault(kind="status", status=503, first=2),
    SupplierFault(kind="status", status=400, probability=0.25, retry_after=1, duration=10),
    *(IccFault(kind=k, probability=p) for k in ("reorder", "duplicate", "clear") for p in (1, 0.4)),
    Poison(kinds=("no-headers", "unknown-type", "unknown-supplier", "not-xml")),
    Clock(ka_skew_ms=-2000),
    Attack(kinds=("xxe", "replayed"), supplier=2),
    *(PkiChange(a, 1, 2) for a in ("revoke", "expire", "rotate", "swap", "move")),
    PkiChange("revoke", 0),
]

#: A parameter dump: ``kind=status``, ``first=2``, ``SupplierFault:``.
DUMP = re.compile(r"\w=\S|^[A-Z][a-z]+[A-Z]\w*:|\b(?:doc_type|ka_skew_ms|retry_after)\b")


def sentences(text: str) -> None:
    assert text[0].isupper(), text
    assert text.rstrip().endswith("."), text
    assert not DUMP.search(text), text


class TestStepText:
    @pytest.mark.parametrize("step", EVERY_KIND, ids=lambda s: type(s).__name__)
    def test_every_kind_says_what_happens_and_what_to_watch(self, step: Step) -> None:
        """A sentence of what happens, and one of what to watch; never key=value."""
        text = step_text(step, 3)
        sentences(text["what"])
        assert text["watch"].startswith("Watch "), text
        sentences(text["watch"])

    @pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
    def test_every_step_of_the_library_is_a_sentence(self, path: Path) -> None:
        """The library's steps, as the live view's step bar shows them."""
        scenario = load_scenario(path)
        for step in scenario.steps:
            sentences(describe_step(step, scenario.supplier_count))

    def test_a_produce_says_how_many_messages_in_afs_terms(self) -> None:
        """The count follows the suppliers; the documents carry their Swedish names."""
        text = describe_step(Produce(chains=1), 2)
        assert "(6 messages)" in text
        for sv in ("inköpsorder", "självfaktura", "kreditfaktura"):
            assert sv in text
        assert "self-billing invoices (självfaktura)" in describe_step(
            Produce(doc_type="invoice", count=2), 1
        )

    def test_a_status_fault_tells_a_passing_answer_from_a_final_one(self) -> None:
        """5xx is retried; 4xx goes to the dead-letter queue."""
        assert "retry" in describe_step(SupplierFault(kind="status", status=503, first=2))
        assert "next 2 requests" in describe_step(SupplierFault(kind="status", first=2))
        final = describe_step(SupplierFault(kind="status", status=400))
        assert "dead-letter queue at once" in final

    def test_the_scenarios_own_words_replace_the_kinds(self) -> None:
        """`say:` is the step's whole text."""
        assert step_text(Wait(timeout=3, say="Now we wait."), 1) == {
            "what": "Now we wait.",
            "watch": "",
        }
