"""An external supplier that pulls (``b2bsim run --endpoint-mode pull``).

The run's ICC serves its outbox (the pull API, docs/pull.md) at a fixed
address, ``https://127.0.0.1:PULL_PORT/b2b/outbox`` (``--pull-port``,
default :data:`DEFAULT_PULL_PORT`), so that a puller configured beforehand
reaches it.  The puller trusts the AF test CA of ``--state`` and presents its
own certificate, issued by that CA for its organisation number; the run
registers that certificate's SHA-256 (``--endpoint-cert FILE``, or
``--endpoint-cert-sha256 HEX``, or else the supplier's certificate in the
state directory).  There is no push endpoint: ``--endpoint`` is refused; a
``--readback`` is checked and pinned as for push.  Each ``mode: pull`` entry of
``--target FILE`` (:mod:`simulator.runs.target_file`) is made here too, every
one on the same outbox port.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from simulator.runs.endpoint import ExternalEndpoint, check_endpoint
from simulator.vocabulary.certs import cert_sha256, load_certificate, org_number_of
from simulator.vocabulary.errors import B2BSimError, EndpointError
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import normalise_pin

__all__ = [
    "CLI_NAMES",
    "DEFAULT_PULL_PORT",
    "check_puller",
    "outbox_url",
    "pull_endpoint",
    "puller_pin",
]

#: The run's outbox port when ``--pull-port`` is not given.
DEFAULT_PULL_PORT = 9443
OUTBOX_HOST = "127.0.0.1"
#: What :func:`puller_pin`'s errors call the certificate, the number and the pin.
CLI_NAMES = ("--endpoint-cert", "--org-number", "--endpoint-cert-sha256")


def outbox_url(port: int) -> str:
    """The run's outbox URL: what the puller fetches from, and its registry ``url``."""
    return f"https://{OUTBOX_HOST}:{port}/b2b/outbox"


def pull_endpoint(
    state: StateDir,
    *,
    org_number: str,
    cert: Path | None = None,
    cert_sha256_hex: str | None = None,
    pull_port: int | None = None,
    readback: str | None = None,
    ca: Path | None = None,
    pull_faults: bool = True,
) -> ExternalEndpoint:
    """The external supplier of a pull run, not yet checked (:func:`check_puller` does)."""
    port = DEFAULT_PULL_PORT if pull_port is None else pull_port
    pin = cert_sha256_hex
    if cert is not None:
        pin = puller_pin(state, org_number, cert, cert_sha256_hex)
    return ExternalEndpoint(
        url=outbox_url(port),
        ca=ca or state.ca_cert,
        org_number=org_number,
        cert_sha256=pin,
        readback=readback,
        mode="pull",
        pull_port=port,
        pull_faults=pull_faults,
    )


def puller_pin(
    state: StateDir,
    org_number: str,
    cert: Path,
    pin: str | None = None,
    *,
    names: tuple[str, str, str] = CLI_NAMES,
) -> str:
    """The SHA-256 of the puller's certificate file, checked: issued by the AF test CA of
    ``state`` for ``org_number``, valid now, and the same as ``pin`` if one is given.

    ``names``: what the errors call the certificate, the organisation number and the
    pin (the options; a target file's keys)."""
    cert_is, org_is, pin_is = names
    try:
        certificate = load_certificate(cert)
    except B2BSimError as exc:
        raise EndpointError(
            f"{cert_is} {cert}: {exc}", hint="pass the puller's certificate, a PEM file"
        ) from None
    ca = load_certificate(state.ca_cert)
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise _not_ours(f"{cert_is} {cert}", state) from None
    named = org_number_of(certificate)
    if named != org_number:
        raise EndpointError(
            f"{cert_is} {cert} names organisation {named or '(none)'}, not {org_is} {org_number}",
            hint="pass the certificate AF issued to this supplier (b2bsim pki issue ORG)",
        )
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise EndpointError(
            f"{cert_is} {cert} is not valid now (until {certificate.not_valid_after_utc:%Y-%m-%d})",
            hint="renew the puller's certificate (b2bsim pki issue ORG)",
        )
    sha = cert_sha256(certificate)
    if pin is not None and normalise_pin(pin) != sha:
        raise EndpointError(
            f"{cert_is} {cert} has the fingerprint {sha}, not {pin_is} {pin}",
            hint="give one of the two, or both for the same certificate",
        )
    return sha


def _not_ours(cert: str, state: StateDir) -> EndpointError:
    return EndpointError(
        f"{cert} is not issued by the AF test CA of --state ({state.ca_cert})",
        hint="the ICC accepts only pullers with a certificate from that CA: issue one with "
        "b2bsim pki issue ORG",
    )


def check_puller(state: StateDir, endpoint: ExternalEndpoint) -> ExternalEndpoint:
    """Before anything starts: the organisation number, the puller's pin, a free outbox
    port, and the read-back (pinned).  EndpointError (exit 2) if one cannot be used."""
    endpoint = replace(endpoint, cert_sha256=endpoint.cert_sha256 or _state_pin(state, endpoint))
    endpoint = endpoint.checked()
    assert endpoint.pull_port is not None
    _check_port(endpoint.pull_port)
    if endpoint.readback is None:
        return endpoint
    server = check_endpoint(state, replace(endpoint, url=endpoint.readback, cert_sha256=None))
    return replace(endpoint, readback_sha256=server.cert_sha256)


def _state_pin(state: StateDir, endpoint: ExternalEndpoint) -> str:
    """The supplier's certificate in the state directory, if AF's state has it."""
    cert = state.supplier_cert(endpoint.org_number)
    if not cert.is_file():
        raise EndpointError(
            f"no certificate of the puller of {endpoint.org_number} is known",
            hint="pass --endpoint-cert FILE (the certificate it presents) or "
            "--endpoint-cert-sha256 HEX",
        )
    return puller_pin(state, endpoint.org_number, cert)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise EndpointError(
            f"--pull-port {port} is not a TCP port", hint="give a port from 1 to 65535"
        )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((OUTBOX_HOST, port))
        except OSError as exc:
            raise EndpointError(
                f"cannot serve the outbox on {OUTBOX_HOST}:{port}: {exc.strerror}",
                hint="stop what uses the port, or pass another --pull-port (and tell the puller)",
            ) from None
