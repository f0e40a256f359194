"""What a conformance case works with: the target, its answers, and the kit.

:class:`ConformanceTarget` is what to test (checked on construction),
:class:`Answer` what one POST got back, and :class:`Kit` what every case of
:mod:`simulator.kits.conformance_cases` uses: fresh KA documents, envelopes
as the ICC makes them, signers, and a mutual-TLS POST to the target.  The
runner is :mod:`simulator.kits.conformance`.
"""

from __future__ import annotations

import io
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from ka_producer.documents import DocumentFactory, GeneratedDocument, Seller, seller_profile
from simulator.kits.conformance_certs import Credential, Material
from simulator.vocabulary.envelope import Envelope, to_xml
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import (
    normalise_org_number,
    org_number_from_index,
    validate_org_number,
)
from simulator.vocabulary.messages import MessageMeta, now_ms
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context, normalise_pin
from simulator.vocabulary.xmlsafe import serialize

__all__ = ["DEFAULT_BURST", "DEFAULT_TIMEOUT", "Answer", "ConformanceTarget", "Kit", "is_loopback"]

DEFAULT_TIMEOUT = 10.0
DEFAULT_BURST = 200
MAX_BURST = 100_000


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (the endpoint runs on this machine)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ConformanceTarget:
    """What to test and with which keys; every value is checked on construction.

    ``client_cert``/``client_key`` are presented in TLS (the ICC's);
    ``signer_cert``/``signer_key`` sign the envelopes (the ICC's).  ``state``
    is the test PKI's directory: its CA key (if present) issues the wrong
    client certificates some cases need.
    """

    url: str
    target_ca: Path
    org_number: str
    client_cert: Path
    client_key: Path
    signer_cert: Path
    signer_key: Path
    state: StateDir
    cert_sha256: str | None = None  # pin; None: use whatever the target presents
    timeout: float = DEFAULT_TIMEOUT
    seed: int = 1
    case_ids: tuple[str, ...] | None = None  # None: every case
    burst: int = DEFAULT_BURST  # envelopes of the month-end burst case
    # May the kit publish a CRL to STATE/pki/crl.pem for the endpoint to read?
    # None: only when the target runs on this machine (a loopback host).
    publish_crl: bool | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(
                f"target {self.url!r} is not an https URL",
                hint="give the supplier's push endpoint as the registry would hold it, "
                "e.g. https://supplier.example:8443/b2b/envelopes",
            )
        org = validate_org_number(normalise_org_number(self.org_number))
        object.__setattr__(self, "org_number", org)
        if self.cert_sha256 is not None:
            object.__setattr__(self, "cert_sha256", normalise_pin(self.cert_sha256))
        if not (self.timeout > 0):
            raise ConfigError(f"timeout {self.timeout!r} is not positive", hint="e.g. 10")
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed} is negative", hint="use a seed of 0 or more")
        if not 1 <= self.burst <= MAX_BURST:
            raise ConfigError(
                f"burst {self.burst} is not from 1 to {MAX_BURST}",
                hint=f"give the month-end burst's size, e.g. {DEFAULT_BURST}",
            )

    @property
    def crl_reaches_target(self) -> bool:
        """True if a CRL the kit writes to STATE/pki/crl.pem is the one the endpoint reads."""
        if self.publish_crl is not None:
            return self.publish_crl
        return is_loopback(self.host)

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked in __post_init__
        return host

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443


@dataclass(frozen=True)
class Answer:
    """What one POST got back: an HTTP answer, or no answer at all (``error``)."""

    status: int | None
    content_type: str = ""
    text: str = ""
    error: str | None = None

    @property
    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None."""
        try:
            data = json.loads(self.text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @property
    def receipt_status(self) -> str | None:
        """``status`` of a JSON receipt (``accepted``, ``duplicate``), or None."""
        body = self.json
        value = body.get("status") if body else None
        return value if isinstance(value, str) else None

    def describe(self) -> str:
        """One short phrase: ``HTTP 403 SIGNATURE_TAMPERED``, ``HTTP 201 accepted``, …."""
        if self.status is None:
            return f"no HTTP answer ({self.error})"
        body = self.json or {}
        label = body.get("code") if isinstance(body.get("code"), str) else None
        label = label or self.receipt_status
        return f"HTTP {self.status}" + (f" {label}" if label else "")


@dataclass
class Kit:
    """What a case uses: documents, envelopes, signers and a mutual-TLS POST to the target."""

    target: ConformanceTarget
    target_cert_sha256: str
    material: Material
    session: aiohttp.ClientSession
    factory: DocumentFactory = field(init=False)
    seller: Seller = field(init=False)
    _sequence: int = field(default=0, init=False)
    _base_ms: int = field(default=0, init=False)
    _signer: EnvelopeSigner = field(init=False)
    _icc_ctx: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        t = self.target
        self.factory = DocumentFactory(t.seed)
        self.seller = seller_profile(t.org_number, f"Leverantör {t.org_number} AB")
        self._signer = EnvelopeSigner(t.signer_key.read_bytes(), t.signer_cert.read_bytes())
        self._icc_ctx = self.context(t.client_cert, t.client_key)
        self._base_ms = now_ms()

    def context(self, cert: Path, key: Path) -> ssl.SSLContext:
        """A client context presenting ``cert``, trusting --target-ca, pinned to the target."""
        return client_context(cert, key, self.target.target_ca, pin_sha256=self.target_cert_sha256)

    def order(self) -> GeneratedDocument:
        """A fresh purchase order for the target's organisation."""
        return self.factory.order(self.seller)

    def chain(self) -> tuple[GeneratedDocument, GeneratedDocument, GeneratedDocument]:
        """A fresh order, its self-billing invoice and a credit note of it."""
        return self.factory.chain(self.seller)

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def envelope(
        self,
        doc: GeneratedDocument,
        *,
        sequence: int | None = None,
        org_number: str | None = None,
        cert_sha256: str | None = None,
        url: str | None = None,
        envelope_id: str | None = None,
        created_at_ms: int | None = None,
    ) -> Envelope:
        """An envelope as the ICC makes it for ``doc``, addressed to the target unless told."""
        seq = sequence if sequence is not None else self.next_sequence()
        meta = MessageMeta.new(
            doc.message_type,
            org_number or self.target.org_number,
            seq,
            produced_at_ms=self._base_ms + seq,  # KA's clock runs with its sequence
        )
        return Envelope.create(
            meta,
            doc.xml,
            receiver_cert_sha256=cert_sha256 or self.target_cert_sha256,
            receiver_url=url or self.target.url,
            envelope_id=envelope_id,
            created_at_ms=created_at_ms,
        )

    def sign(self, envelope: Envelope) -> bytes:
        """``envelope`` signed as the ICC."""
        return self._signer.sign(envelope)

    def sign_as(self, credential: Credential, envelope: Envelope) -> bytes:
        """``envelope`` signed with ``credential`` (someone who is not the ICC)."""
        signer = EnvelopeSigner(credential.key.read_bytes(), credential.cert.read_bytes())
        return signer.sign(envelope)

    def sign_with(self, envelope: Envelope, *, signature: str, digest: str) -> bytes:
        """``envelope`` signed with the ICC's key but other algorithms (e.g. SHA-1), via signxml."""
        return sign_with_algorithms(
            envelope,
            key=self.target.signer_key.read_bytes(),
            cert=self.target.signer_cert.read_bytes(),
            signature=signature,
            digest=digest,
        )

    def other_org_number(self) -> str:
        """A valid organisation number that is not the target's."""
        for i in range(1000, 1010):
            org = org_number_from_index(i, prefix="55")
            if org != self.target.org_number:
                return org
        raise AssertionError("unreachable")  # pragma: no cover

    def begin(self, case_id: str) -> None:
        """The case ``case_id`` starts (a recording kit keeps its exchanges apart)."""

    async def post(
        self,
        body: bytes,
        *,
        client: Credential | None = None,
        content_type: str = "application/xml",
    ) -> Answer:
        """POST ``body`` to the target as the ICC (or presenting ``client``)."""
        ctx = self._icc_ctx if client is None else self.context(client.cert, client.key)
        try:
            async with self.session.post(
                self.target.url,
                data=io.BytesIO(body),  # a stream: large bodies do not block the event loop
                headers={"Content-Type": content_type},
                ssl=ctx,
            ) as resp:
                text = await resp.text(errors="replace")
                return Answer(resp.status, resp.content_type, text[:4000])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Answer(None, error=_short_error(exc))


class _AnyAlgorithmSigner(XMLSigner):
    def check_deprecated_methods(self) -> None:
        """Allow SHA-1, as an old system's or an attacker's signer would."""


def sign_with_algorithms(
    envelope: Envelope, *, key: bytes, cert: bytes, signature: str, digest: str
) -> bytes:
    """``envelope`` with one enveloped signature using the given algorithm URIs."""
    signer = _AnyAlgorithmSigner(
        signature_algorithm=SignatureMethod(signature),
        digest_algorithm=DigestAlgorithm(digest),
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    root = signer.sign(to_xml(envelope), key=key, cert=cert.decode())
    return serialize(root)


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
