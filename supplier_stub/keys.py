"""Which certificate and key the stub serves (and pulls) with, for each supplier.

By default those of the state's test PKI (``pki/suppliers/ORG.pem`` and
``.key``).  A supplier whose certificate AF issued from its own CSR has its
key outside the state: :class:`OwnKeyPair` (``b2bsim serve supplier-stub
--cert FILE --key FILE``) serves that supplier with its own files.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from simulator.vocabulary.certs import cert_sha256, crl_path, load_certificate, org_number_of
from simulator.vocabulary.errors import PkiError
from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import reloading_server_context

__all__ = ["OwnKeyPair", "server_tls", "supplier_key_pair"]


@dataclass(frozen=True, slots=True)
class OwnKeyPair:
    """A supplier's own certificate and key files, served instead of the state's."""

    cert: Path
    key: Path

    @property
    def org_number(self) -> str | None:
        """The organisation number the certificate is bound to (None: not a supplier's)."""
        return org_number_of(load_certificate(self.cert))


def supplier_key_pair(state: StateDir, org: str, own: OwnKeyPair | None) -> tuple[Path, Path]:
    """The certificate and key files of supplier ``org``: ``own`` if it is that supplier's."""
    if own is not None and own.org_number == org:
        return own.cert, own.key
    cert, key = state.supplier_cert(org), state.supplier_key(org)
    if cert.is_file() and not key.exists():
        raise PkiError(
            f"the state holds no key of supplier {org}: its certificate was issued from its CSR",
            hint="serve it with the supplier's own files (--cert CERT.pem --key KEY.pem), "
            "or serve only the others (--org-number)",
        )
    return cert, key


def server_tls(supplier: SupplierEntry, state: StateDir, own: OwnKeyPair | None) -> ssl.SSLContext:
    """The server context of one supplier's port: its registered certificate, the CA's CRL."""
    cert_path, key_path = supplier_key_pair(state, supplier.org_number, own)
    if cert_sha256(load_certificate(cert_path)) != supplier.cert_sha256:
        raise PkiError(
            f"the certificate at {cert_path} is not the one registered for {supplier.org_number}",
            hint="re-run `b2bsim pki init` (or `pki issue`) so that the registry and the PKI agree",
        )
    # Reloaded in every handshake: a rotated certificate or a new CRL applies at once.
    return reloading_server_context(cert_path, key_path, state.ca_cert, crl=crl_path(state))
