"""What grading an ICC works with: the target (:class:`IccTarget`) and a :class:`Trial`.

:class:`IccTarget` is the command line of ``b2bsim conformance --icc``,
checked on construction (the supplier's certificate and key in the state
directory, a listen address that the certificate names).  A :class:`Trial`
is one run: the scripted server (:class:`~simulator.kits.icc_harness.IccHarness`),
the broker connection on which the harness itself publishes KA's test
messages (the harness plays KA too: it cannot make a real KA publish), and
what was published.  :func:`wrong_certificate` makes the certificate of the
pin case: from the AF test CA and naming the same hosts (so only the pin can
refuse it) when the CA's key is in the state directory.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ka_producer.documents import DocumentFactory, seller_profile
from simulator.kits.icc_harness import IccHarness, Reply
from simulator.kits.icc_harness_grading import Published
from simulator.lab.certbuilder import (
    build_certificate,
    host_names,
    key_usage,
    name,
    write_pair,
)
from simulator.lab.pki import current_hosts, load_certificate, load_private_key
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import is_valid_org_number
from simulator.vocabulary.messages import KA_QUEUE, MessageMeta, now_ms
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.stomp_io import StompConnection

__all__ = ["IccTarget", "Trial", "wrong_certificate"]

#: Defaults of the command line (docs/conformance.md, "Grading an ICC").
DEFAULT_WAIT = 30.0  # seconds to wait for the ICC's next attempt
DEFAULT_ICC_TIMEOUT = 10.0  # the ICC's own request timeout (ours: serve icc --request-timeout)
DEFAULT_QUIET = 3.0  # seconds without an attempt that mean "it will not try again"
DEFAULT_RETRY_AFTER = 2.0  # the Retry-After of the 429 case


@dataclass(frozen=True)
class IccTarget:
    """What to grade: the harness's address and supplier, the broker, the waits."""

    state: StateDir
    org_number: str
    host: str
    port: int
    broker_url: str
    queue: str = KA_QUEUE
    timeout: float = DEFAULT_WAIT
    icc_timeout: float = DEFAULT_ICC_TIMEOUT
    quiet: float = DEFAULT_QUIET
    retry_after: float = DEFAULT_RETRY_AFTER
    seed: int = 1
    case_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not is_valid_org_number(self.org_number):
            raise ConfigError(
                f"--org-number {self.org_number!r} is not a Swedish organisation number",
                hint="give the 10 digits (with a valid check digit) of a supplier in the state",
            )
        for what, path in (("certificate", self.cert), ("key", self.key)):
            if not path.is_file():
                raise ConfigError(
                    f"no supplier {what} for {self.org_number} at {path}",
                    hint="run `b2bsim pki init` (or pass --state) with that supplier",
                )
        if not self.state.ca_cert.is_file():
            raise ConfigError(
                f"no AF test CA at {self.state.ca_cert}", hint="run `b2bsim pki init`"
            )
        hosts = current_hosts(self.cert)
        if self.host not in hosts:
            raise ConfigError(
                f"the supplier certificate {self.cert} names {', '.join(hosts)}, not {self.host}: "
                "the ICC would refuse every connection",
                hint=f"listen on one of {', '.join(hosts)} (--listen HOST:PORT), or reissue the "
                "certificate for this host",
            )
        for what, value in (
            ("--timeout", self.timeout),
            ("--icc-request-timeout", self.icc_timeout),
            ("quiet", self.quiet),
            ("retry_after", self.retry_after),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(
                    f"{what} {value!r} is not a positive number of seconds", hint="e.g. 10"
                )

    @property
    def cert(self) -> Path:
        return self.state.supplier_cert(self.org_number)

    @property
    def key(self) -> Path:
        return self.state.supplier_key(self.org_number)


@dataclass
class Trial:
    """One run of the cases against the ICC under test."""

    target: IccTarget
    harness: IccHarness
    conn: StompConnection
    cert_sha256: str  # the registered certificate's, the pin the ICC must hold
    wrong_sha256: str  # the pin case's certificate's
    published: dict[str, Published] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _sequence: int = 0

    def __post_init__(self) -> None:
        self._factory = DocumentFactory(self.target.seed)
        self._seller = seller_profile(
            self.target.org_number, f"Leverantör {self.target.org_number} AB"
        )

    @property
    def ca_pem(self) -> bytes:
        return self.target.state.ca_cert.read_bytes()

    async def publish(self, count: int = 1, *, replies: Sequence[Reply] = ()) -> list[str]:
        """Put ``count`` purchase orders for the supplier on KA's queue, as KA does; their ids.

        Each message's attempts are answered by ``replies`` (scripted before it is sent).
        """
        ids: list[str] = []
        for _ in range(count):
            doc = self._factory.order(self._seller)
            self._sequence += 1
            meta = MessageMeta.new(
                doc.message_type, self.target.org_number, self._sequence, produced_at_ms=now_ms()
            )
            self.published[meta.message_id] = Published(meta, doc.xml)
            self.harness.script(meta.message_id, *replies)
            await self.conn.send(
                self.target.queue, doc.xml.decode("utf-8"), meta.headers(), receipt=True
            )
            ids.append(meta.message_id)
        return ids


def wrong_certificate(state: StateDir, supplier_cert: Path, out: Path) -> tuple[Path, Path, str]:
    """A server certificate the ICC must not trust, in ``out``; and a note on what it tests.

    With the AF test CA's key: issued by the AF CA for the supplier's hosts, so
    chain and host name pass and only the pin refuses it.  Without: from a CA
    of its own (trust refuses it, so the pin itself is not what is tested).
    """
    subject = name((NameOID.COMMON_NAME, "not the registered certificate"))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    end = start + dt.timedelta(days=1)
    if state.ca_key.is_file():
        issuer = (load_certificate(state.ca_cert), load_private_key(state.ca_key))
        note = ""
    else:
        ca_name = name((NameOID.COMMON_NAME, "not the AF test CA"))
        issuer = build_certificate(ca_name, not_before=start, not_after=end, ca=True)
        note = (
            f"no AF test CA key in {state.pki}: the pin case presents a certificate from "
            "another CA, so it tests trust, not the pin itself"
        )
    cert, key = build_certificate(
        subject,
        not_before=start,
        not_after=end,
        issuer=issuer,
        usage=key_usage(digital_signature=True),
        ekus=(ExtendedKeyUsageOID.SERVER_AUTH,),
        sans=host_names(current_hosts(supplier_cert)),
    )
    cert_path, key_path = out / "wrong.pem", out / "wrong.key"
    write_pair(cert_path, cert, key_path, key)
    return cert_path, key_path, note
