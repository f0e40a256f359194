"""The ICC's test-only switches: read only when explicitly allowed, refused otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from icc_bridge import IccTestSwitches, read_test_switches
from simulator.vocabulary.errors import ConfigError

ALLOW = {"B2BSIM_ICC_TEST_SWITCHES": "allow"}


def test_nothing_set_is_a_correct_icc() -> None:
    assert read_test_switches({}) == IccTestSwitches()
    assert IccTestSwitches().names == ()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"B2BSIM_ICC_TEST_NO_PIN": "1"}, IccTestSwitches(no_pin=True)),
        ({"B2BSIM_ICC_TEST_NO_RETRY": "1"}, IccTestSwitches(no_retry=True)),
        ({"B2BSIM_ICC_TEST_NO_PIN": "0"}, IccTestSwitches()),
    ],
)
def test_a_switch_applies_when_allowed(environ: dict[str, str], expected: IccTestSwitches) -> None:
    assert read_test_switches({**environ, **ALLOW}) == expected


@pytest.mark.parametrize("name", ["B2BSIM_ICC_TEST_NO_PIN", "B2BSIM_ICC_TEST_NO_RETRY"])
@pytest.mark.parametrize("allow", [None, "yes", "1"])
def test_a_switch_without_the_allowing_variable_is_refused(name: str, allow: str | None) -> None:
    environ = {name: "1", **({} if allow is None else {"B2BSIM_ICC_TEST_SWITCHES": allow})}
    with pytest.raises(ConfigError) as err:
        read_test_switches(environ)
    assert name in err.value.message
    assert "never use it in production" in (err.value.hint or "")


def test_a_value_that_is_neither_on_nor_off_is_refused() -> None:
    with pytest.raises(ConfigError, match="neither 1 nor 0"):
        read_test_switches({"B2BSIM_ICC_TEST_NO_RETRY": "maybe", **ALLOW})


def test_serve_icc_does_not_start_with_a_switch_that_is_not_allowed(tmp_path: Path) -> None:
    """One line, exit 2, before anything connects (the broker named is never asked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("B2BSIM_")}
    env["B2BSIM_ICC_TEST_NO_PIN"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "simulator.cli", "--state", str(tmp_path), "serve", "icc",
         "--broker", "stomp://127.0.0.1:1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "B2BSIM_ICC_TEST_NO_PIN is a test-only switch" in lines[0]
