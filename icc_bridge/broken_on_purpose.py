"""TEST-ONLY switches that break the ICC on purpose. NEVER set them in production.

``b2bsim conformance --icc`` grades an ICC (docs/conformance.md, "Grading an
ICC"); its own tests prove that it catches a broken one by starting our ICC
with one of these switches, each named for what it breaks:

- ``B2BSIM_ICC_TEST_NO_PIN=1``: the supplier's registered certificate is not
  pinned; any server certificate that chains to the trusted CA and names the
  host is accepted (so an envelope may go to the wrong server);
- ``B2BSIM_ICC_TEST_NO_RETRY=1``: one attempt per message; a 5xx, 429,
  timeout or reset dead-letters it at once.

A switch is refused (the ICC does not start) unless
``B2BSIM_ICC_TEST_SWITCHES=allow`` is set as well, so that a stray variable
in an operator's environment cannot weaken a real ICC; an ICC that runs with
one logs a warning at start and names it in its ready line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simulator.vocabulary.errors import ConfigError

__all__ = [
    "ALLOW_ENV",
    "NO_PIN_ENV",
    "NO_RETRY_ENV",
    "IccTestSwitches",
    "read_test_switches",
]

#: Turns pinning off (test only).
NO_PIN_ENV = "B2BSIM_ICC_TEST_NO_PIN"
#: Turns retries off (test only).
NO_RETRY_ENV = "B2BSIM_ICC_TEST_NO_RETRY"
#: Must be ``allow`` for either switch to be accepted.
ALLOW_ENV = "B2BSIM_ICC_TEST_SWITCHES"
_ALLOW_VALUE = "allow"
_ON = ("1", "true", "yes")


@dataclass(frozen=True)
class IccTestSwitches:
    """What of the ICC is broken on purpose (all off: a correct ICC)."""

    no_pin: bool = False
    no_retry: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The environment names of the switches that are on."""
        on = ((NO_PIN_ENV, self.no_pin), (NO_RETRY_ENV, self.no_retry))
        return tuple(name for name, value in on if value)


def read_test_switches(environ: Mapping[str, str]) -> IccTestSwitches:
    """The switches ``environ`` sets; ConfigError if one is set without the allowing one."""
    switches = IccTestSwitches(no_pin=_on(environ, NO_PIN_ENV), no_retry=_on(environ, NO_RETRY_ENV))
    if switches.names and environ.get(ALLOW_ENV, "").strip() != _ALLOW_VALUE:
        raise ConfigError(
            f"{', '.join(switches.names)} is a test-only switch that breaks the ICC on purpose, "
            f"and {ALLOW_ENV}={_ALLOW_VALUE} is not set",
            hint=f"unset {', '.join(switches.names)} (never use it in production), or set "
            f"{ALLOW_ENV}={_ALLOW_VALUE} in a test",
        )
    return switches


def _on(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in _ON:
        return True
    raise ConfigError(
        f"{name}={environ[name]!r} is neither 1 nor 0", hint=f"unset {name}, or set it to 1"
    )
