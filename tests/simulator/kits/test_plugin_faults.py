"""The fault calls of B2BSimChain refuse what cannot apply, before anything is played."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.kits.plugin_chain import B2BSimChain
from simulator.kits.plugin_config import ExternalSupplier
from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.scenario import Attack, IccFault, PkiChange
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir

URL = "stomp://127.0.0.1:9"


def external_chain(tmp_path: Path) -> B2BSimChain:
    endpoint = ExternalEndpoint("https://127.0.0.1:9/b2b/envelopes", tmp_path, "5520000000")
    supplier = ExternalSupplier(StateDir(tmp_path / "af"), endpoint)
    return B2BSimChain(StateDir(tmp_path / "mine"), URL, external=supplier)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda c: c.revoke_certificate(0), "`pki: {revoke: icc}`"),
        (lambda c: c.rotate_certificate(1), "`pki: {rotate: 1}`"),
        (lambda c: c.play(Attack(kinds=("replay",))), "`attack` on supplier 1"),
    ],
)
def test_what_does_not_apply_to_the_external_supplier_is_refused_with_its_reason(
    tmp_path: Path, call: object, words: str
) -> None:
    chain = external_chain(tmp_path)
    with pytest.raises(ConfigError, match="not applicable to the external endpoint") as err:
        call(chain)  # type: ignore[operator]
    assert words in str(err.value)


def test_what_applies_reaches_the_chain(tmp_path: Path) -> None:
    """Another supplier's certificate, the ICC's faults: played (here: not running yet)."""
    chain = external_chain(tmp_path)
    with pytest.raises(ConfigError, match="the chain is not running"):
        chain.rotate_certificate(2)
    with pytest.raises(ConfigError, match="the chain is not running"):
        chain.duplicate(0.5)


def test_broker_faults_need_a_broker_of_the_chain_s_own(tmp_path: Path) -> None:
    chain = B2BSimChain(StateDir(tmp_path), URL)
    for call in (chain.restart_broker, chain.kill_broker):
        with pytest.raises(ConfigError, match="may not restart or kill") as err:
            call()
        assert "own_broker=True" in err.value.one_line()


def test_without_an_external_supplier_every_step_may_be_played(tmp_path: Path) -> None:
    chain = B2BSimChain(StateDir(tmp_path), URL)
    for step in (PkiChange(action="revoke", supplier=0), IccFault(kind="reorder")):
        with pytest.raises(ConfigError, match="the chain is not running"):
            chain.play(step)


def test_grade_needs_an_external_supplier(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an external supplier"):
        B2BSimChain(StateDir(tmp_path), URL).grade()
