"""An external supplier in a scenario run: the supplier's own endpoint and its read-back.

``b2bsim run --endpoint URL --endpoint-ca FILE --org-number N`` puts supplier 1
of the scenario at a real endpoint.  Before anything starts,
:func:`check_endpoint` connects to it as the ICC does (the ICC's certificate
of the state directory, mutual TLS, the endpoint's certificate chaining to
``--endpoint-ca`` and naming the URL's host) and takes the pin from it, or
checks the one given; :func:`check_readback` asks the read-back for one
entry.  :func:`read_ledger` reads the whole read-back after the run
(``GET /b2b/ledger?after=POSITION&limit=N``, docs/openapi.yaml).
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from simulator.vocabulary.certs import crl_path
from simulator.vocabulary.errors import EndpointError, ReadbackError
from simulator.vocabulary.identifiers import is_valid_org_number, normalise_org_number
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context, normalise_pin

__all__ = [
    "ExternalEndpoint",
    "LedgerEntry",
    "check_endpoint",
    "check_readback",
    "last_position",
    "read_ledger",
    "read_page",
]

#: Entries asked for per page of the read-back.
PAGE = 500
#: Pages read at most (a read-back whose ``next`` never ends is garbage).
MAX_PAGES = 10_000
TIMEOUT = 10.0


@dataclass(frozen=True)
class ExternalEndpoint:
    """Where the external supplier listens, and how the run trusts it."""

    url: str
    ca: Path  # the CA that issued the endpoint's server certificate
    org_number: str
    cert_sha256: str | None = None  # the pin; None: taken from the endpoint at start
    readback: str | None = None  # its read-back URL, if it has one
    readback_after: int = 0  # the read-back's last position before the run (earlier runs')
    # Whether the supplier reads the run's CRL (RUN_DIR/pki/crl.pem); no way to tell it
    # yet, so an ICC revocation is not applicable and not graded (scenario.py says why).
    sees_run_crl: bool = False
    # Pull (simulator/runs/pull_endpoint.py): ``url`` is the run's outbox, on ``pull_port``;
    # ``cert_sha256`` pins the puller's client certificate (the registry's meaning for a
    # pull supplier) and ``readback_sha256`` the read-back's server certificate.
    mode: str = "push"
    pull_port: int | None = None
    readback_sha256: str | None = None
    pull_faults: bool = True  # lose an acknowledgement and answer 503 once (pull_grading.py)

    def checked(self) -> ExternalEndpoint:
        """The same with a normalised organisation number and pin; EndpointError if bad."""
        org = normalise_org_number(self.org_number)
        if not is_valid_org_number(org):
            raise EndpointError(
                f"--org-number {self.org_number!r} is not a valid organisation number",
                hint="give the 10 digits of the supplier's number, the last a Luhn check digit",
            )
        for what, url in (("--endpoint", self.url), ("--readback", self.readback)):
            if url is not None and (urlsplit(url).scheme != "https" or not urlsplit(url).hostname):
                raise EndpointError(
                    f"{what} {url!r} is not an https URL", hint="give https://HOST:PORT/PATH"
                )
        if not self.ca.is_file():
            raise EndpointError(
                f"--endpoint-ca {self.ca} is not a file",
                hint="pass the PEM file of the CA that issued the endpoint's certificate",
            )
        pin = None if self.cert_sha256 is None else normalise_pin(self.cert_sha256)
        return replace(self, org_number=org, cert_sha256=pin)


@dataclass(frozen=True)
class LedgerEntry:
    position: int
    envelope_id: str
    message_id: str
    loaded_at_ms: int


def _context(state: StateDir, endpoint: ExternalEndpoint, pin: str | None) -> ssl.SSLContext:
    """The ICC's client context towards the endpoint (its CRL check included)."""
    crl = crl_path(state)
    return client_context(
        state.icc_cert,
        state.icc_key,
        endpoint.ca,
        pin_sha256=pin,
        crl=crl if crl.is_file() else None,
    )


def check_endpoint(state: StateDir, endpoint: ExternalEndpoint) -> ExternalEndpoint:
    """Connect as the ICC; the endpoint with its pin.  EndpointError if it cannot be used."""
    endpoint = endpoint.checked()
    parts = urlsplit(endpoint.url)
    host, port = parts.hostname or "", parts.port or 443
    ctx = _context(state, endpoint, None)
    where = f"{host}:{port}"
    try:
        with (
            socket.create_connection((host, port), timeout=TIMEOUT) as raw,
            ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError as exc:
        why = str(exc.verify_message or exc.reason)
        hint = (
            f"serve a certificate issued by the AF test CA of --state ({state.ca_cert}): the ICC "
            "checks server certificates against that CA's CRL"
            if "CRL" in why
            else "pass the CA that issued its certificate as --endpoint-ca (the AF test CA of "
            f"--state: {state.ca_cert}); the certificate must name {host}"
        )
        raise EndpointError(
            f"the endpoint {endpoint.url} presents an untrusted certificate ({why})", hint=hint
        ) from None
    except (ssl.SSLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise EndpointError(
            f"cannot reach the endpoint {where} over mutual TLS: {reason}",
            hint="start the endpoint, check the URL, and that it trusts the AF test CA of --state",
        ) from None
    presented = hashlib.sha256(der or b"").hexdigest()
    if endpoint.cert_sha256 is not None and presented != endpoint.cert_sha256:
        raise EndpointError(
            f"the endpoint {endpoint.url} presents the certificate {presented}, not the "
            f"--endpoint-cert-sha256 {endpoint.cert_sha256}",
            hint="give the fingerprint of the endpoint's current certificate, or leave the "
            "option out to take it from the endpoint",
        )
    return replace(endpoint, cert_sha256=presented)


def read_page(state: StateDir, endpoint: ExternalEndpoint, after: int, limit: int) -> Any:
    """One page of the read-back, as JSON (ReadbackError if it cannot be read)."""
    assert endpoint.readback is not None
    url = f"{endpoint.readback}?{urlencode({'after': after, 'limit': limit})}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    pin = endpoint.readback_sha256 if endpoint.mode == "pull" else endpoint.cert_sha256
    ctx = _context(state, replace(endpoint, url=endpoint.readback), pin)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=ctx) as resp:  # noqa: S310
            body = resp.read(64 * 1024 * 1024)
    except urllib.error.HTTPError as exc:
        exc.close()  # its body holds the connection
        raise ReadbackError(
            f"the read-back {endpoint.readback} answered HTTP {exc.code} to GET ?after={after}",
            hint="implement GET /b2b/ledger as docs/openapi.yaml says, or run without --readback",
        ) from None
    except (urllib.error.URLError, ssl.SSLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ReadbackError(
            f"cannot read the read-back {endpoint.readback}: {reason}",
            hint="check the --readback URL; it is served over the same mutual TLS as the endpoint",
        ) from None
    try:
        return json.loads(body)
    except ValueError:
        raise _garbage(endpoint, "its answer is not JSON") from None


def _garbage(endpoint: ExternalEndpoint, what: str) -> ReadbackError:
    return ReadbackError(
        f"the read-back {endpoint.readback} answered garbage: {what}",
        hint='answer {"entries": [{"position", "envelope_id", "message_id", "loaded_at_ms"}], '
        '"next"} as docs/openapi.yaml says, or run without --readback',
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(endpoint: ExternalEndpoint, doc: Any, after: int) -> tuple[list[LedgerEntry], Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list) or "next" not in doc:
        raise _garbage(endpoint, 'not an object with "entries" (a list) and "next"')
    entries: list[LedgerEntry] = []
    last = after
    for item in doc["entries"]:
        if not (
            isinstance(item, dict)
            and _is_int(item.get("position"))
            and isinstance(item.get("envelope_id"), str)
            and isinstance(item.get("message_id"), str)
            and _is_int(item.get("loaded_at_ms"))
        ):
            raise _garbage(endpoint, f"the entry {str(item)[:120]} lacks a field or its type")
        if item["position"] <= last:
            raise _garbage(endpoint, f"position {item['position']} does not follow {last}")
        last = item["position"]
        entries.append(
            LedgerEntry(
                item["position"], item["envelope_id"], item["message_id"], item["loaded_at_ms"]
            )
        )
    following = doc["next"]
    if following is not None and (not _is_int(following) or following <= after):
        raise _garbage(endpoint, f'"next" is {following!r}: neither null nor a later position')
    return entries, following


def check_readback(state: StateDir, endpoint: ExternalEndpoint) -> None:
    """Ask the read-back for one entry; ReadbackError if it answers garbage."""
    _entries(endpoint, read_page(state, endpoint, 0, 1), 0)


def last_position(state: StateDir, endpoint: ExternalEndpoint) -> int:
    """The read-back's last position now (0 if empty): what a run grades comes after it."""
    entries = read_ledger(state, endpoint)
    return entries[-1].position if entries else endpoint.readback_after


def read_ledger(state: StateDir, endpoint: ExternalEndpoint) -> list[LedgerEntry]:
    """The entries of the read-back after ``endpoint.readback_after``, in load order."""
    out: list[LedgerEntry] = []
    after = endpoint.readback_after
    for _ in range(MAX_PAGES):
        entries, following = _entries(endpoint, read_page(state, endpoint, after, PAGE), after)
        out.extend(entries)
        if following is None:
            return out
        after = following
    raise _garbage(endpoint, f'"next" did not end after {MAX_PAGES} pages')
