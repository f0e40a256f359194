"""The pytest plugin's configuration: a supplier endpoint that is already running.

A supplier points ``b2bsim_chain`` (and ``b2bsim_run``) at its own endpoint
with the state directory AF gave it, on the command line or in its ini file
(``pytest.ini``, ``[tool.pytest.ini_options]`` of ``pyproject.toml``; the
command line wins):

==================================  ==============================  =====================
option                              ini key                         default
==================================  ==============================  =====================
``--b2bsim-state DIR``              ``b2bsim_state``                (required)
``--b2bsim-endpoint URL``           ``b2bsim_endpoint``             none: the stub
``--b2bsim-endpoint-ca FILE``       ``b2bsim_endpoint_ca``          DIR/pki/ca.pem
``--b2bsim-org-number N``           ``b2bsim_org_number``           (required)
``--b2bsim-endpoint-cert-sha256``   ``b2bsim_endpoint_cert_sha256`` taken from the endpoint
``--b2bsim-readback URL``           ``b2bsim_readback``             none: not graded
==================================  ==============================  =====================

Paths on the command line are relative to where pytest was started, in the
ini file to the ini file's directory.  Bad values are a pytest usage error of
one line (:func:`external_from_config`), and so is an endpoint that cannot be
used (:func:`check_external`, the checks of ``b2bsim run --endpoint``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from simulator.runs.endpoint import ExternalEndpoint
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.identifiers import is_valid_org_number, normalise_org_number
from simulator.vocabulary.state import StateDir

__all__ = ["ExternalSupplier", "add_endpoint_options", "check_external", "external_from_config"]

#: (option, ini key, metavar, help)
OPTIONS = (
    ("--b2bsim-state", "b2bsim_state", "DIR", "the state directory AF gave you (its test CA, ICC)"),
    (
        "--b2bsim-endpoint",
        "b2bsim_endpoint",
        "URL",
        "your endpoint, already running: b2bsim_chain's supplier 1 is delivered there",
    ),
    (
        "--b2bsim-endpoint-ca",
        "b2bsim_endpoint_ca",
        "FILE",
        "the CA that issued your endpoint's certificate (default: DIR/pki/ca.pem)",
    ),
    ("--b2bsim-org-number", "b2bsim_org_number", "N", "your organisation number"),
    (
        "--b2bsim-endpoint-cert-sha256",
        "b2bsim_endpoint_cert_sha256",
        "HEX",
        "pin this certificate (default: the one your endpoint presents)",
    ),
    (
        "--b2bsim-readback",
        "b2bsim_readback",
        "URL",
        "your read-back, GET /b2b/ledger (docs/openapi.yaml): grades what you loaded",
    ),
)
_RUN_FLAG = re.compile(r"(?<![\w-])--(state|endpoint-ca|endpoint-cert-sha256|org-number|readback)")


@dataclass(frozen=True)
class ExternalSupplier:
    """A supplier's own endpoint and the state directory AF gave that supplier.

    ``state`` is only read: each chain copies its CA and ICC certificate into
    a run directory of its own.
    """

    state: StateDir
    endpoint: ExternalEndpoint


def add_endpoint_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """The options and ini keys of the table above."""
    for option, ini, metavar, text in OPTIONS:
        group.addoption(option, metavar=metavar, help=f"{text} (ini: {ini})")
        parser.addini(ini, f"b2bsim: {text}", default=None)


def _value(config: pytest.Config, option: str, ini: str) -> tuple[str | None, Path]:
    """The value given (command line first, else ini) and what a relative path is relative to."""
    given = config.getoption(option.lstrip("-").replace("-", "_"))
    if given:
        return str(given), config.invocation_params.dir
    value = config.getini(ini)
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (str(value).strip() or None) if value else None, base


def _usage(what: str) -> pytest.UsageError:
    return pytest.UsageError(f"b2bsim: {what}")


def external_from_config(config: pytest.Config) -> ExternalSupplier | None:
    """The configured external supplier (None: none), checked without connecting.

    Raises pytest.UsageError with one line if a value is missing or wrong.
    """
    values = {option: _value(config, option, ini) for option, ini, *_ in OPTIONS}
    url = values["--b2bsim-endpoint"][0]
    if url is None:
        extra = [o for o, (v, _) in values.items() if v is not None and o != "--b2bsim-state"]
        if extra:
            raise _usage(f"{', '.join(extra)} given without --b2bsim-endpoint URL")
        return None
    missing = [o for o in ("--b2bsim-state", "--b2bsim-org-number") if values[o][0] is None]
    if missing:
        raise _usage(
            f"--b2bsim-endpoint needs {' and '.join(missing)} too "
            "(the state directory AF gave you, your organisation number)"
        )
    state_value, state_base = values["--b2bsim-state"]
    assert state_value is not None
    state = StateDir(state_base / state_value)
    ca_value, ca_base = values["--b2bsim-endpoint-ca"]
    ca = ca_base / ca_value if ca_value is not None else state.ca_cert
    org = values["--b2bsim-org-number"][0] or ""
    if not is_valid_org_number(normalise_org_number(org)):
        raise _usage(
            f"--b2bsim-org-number {org!r} is not a valid organisation number: give the 10 "
            "digits of your number, the last a Luhn check digit"
        )
    missing_files = [
        str(p) for p in (state.ca_cert, state.icc_cert, state.icc_key) if not p.is_file()
    ]
    if missing_files:
        raise _usage(
            f"--b2bsim-state {state.root} is not a state directory AF gave you: missing "
            f"{', '.join(missing_files)}"
        )
    endpoint = ExternalEndpoint(
        url=url,
        ca=ca,
        org_number=org,
        cert_sha256=values["--b2bsim-endpoint-cert-sha256"][0],
        readback=values["--b2bsim-readback"][0],
    )
    try:
        return ExternalSupplier(state, endpoint.checked())
    except B2BSimError as exc:
        raise _usage(plugin_words(exc.one_line())) from None


def check_external(external: ExternalSupplier) -> ExternalSupplier:
    """Connect as the ICC does, ask the read-back: the supplier with its endpoint's pin.

    Raises B2BSimError (EndpointError, ReadbackError) if it cannot be used.
    """
    from simulator.runs.endpoint_run import prepare_endpoint

    return ExternalSupplier(external.state, prepare_endpoint(external.state, external.endpoint))


def plugin_words(line: str) -> str:
    """An error of ``b2bsim run --endpoint`` in the plugin's words (its option names)."""
    return _RUN_FLAG.sub(r"--b2bsim-\1", line).replace("--endpoint ", "--b2bsim-endpoint ")
