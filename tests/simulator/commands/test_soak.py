"""``b2bsim soak``: bad input is refused (exit 2) before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.cli import main


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--minutes", "0", "--seed", "1"], "--minutes"),
        (["--minutes", "1", "--seed", "1", "--rate", "-2"], "--rate"),
        (["--minutes", "1", "--seed", "1", "--suppliers", "0"], "--suppliers"),
        (["--minutes", "1", "--seed", "1", "--workers", "9"], "--workers"),
        (["--minutes", "1", "--seed", "1", "--drain-timeout", "0"], "--drain-timeout"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    state = tmp_path / "state"
    assert main(["--state", str(state), "soak", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err
    assert len(err.splitlines()) == 1
    assert not (state / "runs").exists()  # refused before anything started


def test_minutes_and_seed_are_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["soak", "--minutes", "1"])
    assert exc.value.code == 2
    assert "--seed" in capsys.readouterr().err
