"""The addressee check: is an envelope addressed to this supplier (number, certificate, URL)?"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from simulator.vocabulary.envelope_model import DEFAULT_PORTS, Envelope
from simulator.vocabulary.errors import AddresseeError
from simulator.vocabulary.identifiers import normalise_org_number

__all__ = ["check_addressee", "normalise_url"]


def normalise_url(url: str) -> str:
    """``url`` with scheme and host lower-case, no default port and no trailing slash."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port is None or port == DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def _fingerprint(value: str) -> str:
    return value.strip().lower().replace(":", "")


def check_addressee(env: Envelope, *, org_number: str, cert_sha256: str, url: str | None) -> None:
    """Raise AddresseeError unless ``env`` is addressed to this organisation, certificate and URL.

    ``url=None`` skips the URL check (an envelope fetched rather than pushed).
    """
    if env.org_number != normalise_org_number(org_number):
        raise AddresseeError(
            f"the envelope is addressed to organisation number {env.org_number}, not {org_number}",
            hint="the ICC looked up the wrong supplier, or this endpoint has the wrong identity",
        )
    if _fingerprint(env.receiver_cert_sha256) != _fingerprint(cert_sha256):
        raise AddresseeError(
            f"the envelope is addressed to certificate sha256 {env.receiver_cert_sha256}, "
            f"not {_fingerprint(cert_sha256)}",
            hint="the supplier's AF-issued certificate was renewed or the registry is stale",
        )
    if url is not None and normalise_url(env.receiver_url) != normalise_url(url):
        raise AddresseeError(
            f"the envelope is addressed to URL {env.receiver_url}, not {url}",
            hint="update the supplier registry with the supplier's current URL",
        )
