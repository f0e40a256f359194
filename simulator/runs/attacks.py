"""Hostile and forged deliveries a scenario aims at a supplier endpoint.

Each attack is one request, made over real mutual TLS (as the ICC, with its
client certificate, unless the attack is about the client certificate), and
its outcome is recorded: the HTTP status and the problem code, ``accepted``
or ``duplicate`` for a receipt, or ``cut-off`` when the server hung up.  A
safe receiver refuses every attack with the documented code and loses none
of the ordinary traffic flowing beside it (docs/security.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from simulator.vocabulary.codes.refusals import (
    BODY_TOO_LARGE,
    CLIENT_NOT_ICC,
    ENVELOPE_STALE,
    SIGNATURE_MISSING,
    SIGNATURE_TAMPERED,
    SIGNER_UNTRUSTED,
    UNSUPPORTED_MEDIA_TYPE,
    WRONG_ADDRESSEE,
    XML_DOCTYPE,
    XML_MALFORMED,
    XML_NOT_UTF8,
    XML_TOO_DEEP,
)
from simulator.vocabulary.envelope import Envelope, to_xml
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms
from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context
from simulator.vocabulary.xmlsafe import serialize

#: Every attack a scenario can name, with the outcome a safe receiver gives.
ATTACKS: dict[str, str] = {
    "xxe": XML_DOCTYPE,
    "billion-laughs": XML_DOCTYPE,
    "external-dtd": XML_DOCTYPE,
    "deep": XML_TOO_DEEP,
    "oversized": BODY_TOO_LARGE,
    "wrong-content-type": UNSUPPORTED_MEDIA_TYPE,
    "not-utf8": XML_NOT_UTF8,
    "garbage": XML_MALFORMED,
    "slow-loris": "cut-off",
    "tampered": SIGNATURE_TAMPERED,
    "unsigned": SIGNATURE_MISSING,
    "forged-signer": SIGNER_UNTRUSTED,
    "stale": ENVELOPE_STALE,
    "wrong-addressee": WRONG_ADDRESSEE,
    "not-icc-client": CLIENT_NOT_ICC,
    "replayed": "duplicate",
}


@dataclass(frozen=True)
class Outcome:
    attack: str
    org_number: str
    status: int | None
    code: str  # problem code, receipt status, or "cut-off"/"error: …"
    expected: str

    @property
    def as_expected(self) -> bool:
        return self.code == self.expected

    def summary(self) -> str:
        """One line for the run's log: the answer's status and code (no status: no answer)."""
        answer = self.code if self.status is None else f"{self.status} {self.code}"
        mark = "as expected" if self.as_expected else f"UNEXPECTED, wanted {self.expected}"
        return f"attack {self.attack} on {self.org_number}: {answer} ({mark})"


XML = "application/xml"


def _billion_laughs() -> bytes:
    entities = ['<!ENTITY l0 "lol">']
    entities += [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)]
    return f"<!DOCTYPE x [{''.join(entities)}]><x>&l9;</x>".encode()


#: Attacks whose body is the same whoever is attacked.
HOSTILE_BODIES: dict[str, bytes] = {
    "xxe": b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    "billion-laughs": _billion_laughs(),
    "external-dtd": b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd"><x/>',
    "deep": b"<a>" * 5000 + b"</a>" * 5000,
    "oversized": b"<x>" + b"a" * (3 * 1024 * 1024) + b"</x>",
    "not-utf8": '<?xml version="1.0" encoding="ISO-8859-1"?><x>å</x>'.encode("latin-1"),
    "garbage": b"%PDF-1.7\n\x01\x02\x03 }{ <<< >>> &&& not XML at all\n" * 20,
}


class Attacker:
    """Aims attacks at one supplier's push endpoint, with the run's PKI."""

    def __init__(
        self,
        state: StateDir,
        target: SupplierEntry,
        other: SupplierEntry,
        document: bytes,
        replay: bytes | None,
    ) -> None:
        self.state, self.target, self.other = state, target, other
        self.document, self.replay = document, replay
        self._icc = EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes())

    def _ctx(self, *, as_icc: bool = True) -> ssl.SSLContext:
        cert, key = (
            (self.state.icc_cert, self.state.icc_key)
            if as_icc
            else (
                self.state.supplier_cert(self.other.org_number),
                self.state.supplier_key(self.other.org_number),
            )
        )
        return client_context(cert, key, self.state.ca_cert, pin_sha256=self.target.cert_sha256)

    def _envelope(
        self, *, to: SupplierEntry | None = None, created_at_ms: int | None = None
    ) -> Envelope:
        to = to or self.target
        meta = MessageMeta.new(
            MessageType.INKOPSORDER, to.org_number, 1, message_id=f"attack-{uuid.uuid4()}"
        )
        return Envelope.create(
            meta,
            self.document,
            receiver_cert_sha256=to.cert_sha256,
            receiver_url=to.url,
            created_at_ms=created_at_ms,
        )

    def _body(self, attack: str) -> tuple[bytes, str, bool]:
        """(body, content type, as the ICC?) of a request-shaped attack."""
        if attack in HOSTILE_BODIES:
            return HOSTILE_BODIES[attack], XML, True
        envelope = self._envelope()
        if attack == "wrong-content-type":
            return self._icc.sign(envelope), "text/plain", True
        if attack == "not-icc-client":
            return self._icc.sign(envelope), XML, False
        if attack == "replayed":
            if self.replay is None:
                raise ValueError("nothing delivered yet to replay")
            return self.replay, XML, True
        return self._forged(attack, envelope), XML, True

    def _forged(self, attack: str, envelope: Envelope) -> bytes:
        """An envelope that is well-formed XML but must not be believed."""
        if attack == "tampered":
            return self._icc.sign(envelope).replace(b"</cbc:ID>", b"X</cbc:ID>", 1)
        if attack == "unsigned":
            return serialize(to_xml(envelope))
        if attack == "forged-signer":
            org = self.other.org_number
            forger = EnvelopeSigner(
                self.state.supplier_key(org).read_bytes(),
                self.state.supplier_cert(org).read_bytes(),
            )
            return forger.sign(envelope)
        if attack == "stale":
            return self._icc.sign(self._envelope(created_at_ms=now_ms() - 2 * 3600_000))
        if attack == "wrong-addressee":
            return self._icc.sign(self._envelope(to=self.other))
        raise ValueError(f"unknown attack {attack!r}")

    async def run(self, attack: str) -> Outcome:
        expected = ATTACKS[attack]
        if attack == "slow-loris":
            code = await asyncio.to_thread(self._slow_loris)
            return Outcome(attack, self.target.org_number, None, code, expected)
        body, content_type, as_icc = self._body(attack)
        timeout = aiohttp.ClientTimeout(total=30)
        headers = {"Content-Type": content_type}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    self.target.url,
                    data=io.BytesIO(body),  # a file-like body is streamed, never blocking the loop
                    headers=headers,
                    ssl=self._ctx(as_icc=as_icc),
                ) as resp,
            ):
                status, text = resp.status, await resp.text(errors="replace")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return Outcome(
                attack, self.target.org_number, None, f"error: {type(exc).__name__}", expected
            )
        return Outcome(attack, self.target.org_number, status, _code(text), expected)

    def _slow_loris(self) -> str:
        """Send the request line and headers one byte at a time; expect to be cut off."""
        parts = urlsplit(self.target.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 443
        request = f"POST {parts.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/xml\r\n"
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            self._ctx().wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.settimeout(60)
            deadline = now_ms() + 60_000
            for ch in request.encode() * 50:
                try:
                    tls.sendall(bytes([ch]))
                    if now_ms() > deadline:
                        return "not cut off"
                    tls.settimeout(0.5)
                    try:
                        if tls.recv(1) == b"":
                            return "cut-off"
                    except TimeoutError:
                        pass
                except (OSError, ssl.SSLError):
                    return "cut-off"
        return "not cut off"


def _code(text: str) -> str:
    try:
        body: Any = json.loads(text)
    except ValueError:
        return text[:60]
    if isinstance(body, dict):
        return str(body.get("code") or body.get("status") or "")
    return ""


def record(path: Path, outcome: Outcome) -> None:
    """Append one outcome to the run's ``attacks.jsonl``."""
    with path.open("a", encoding="utf-8") as f:
        f.write(
            json.dumps(
                {
                    "attack": outcome.attack,
                    "org_number": outcome.org_number,
                    "status": outcome.status,
                    "code": outcome.code,
                    "expected": outcome.expected,
                    "at_ms": now_ms(),
                }
            )
            + "\n"
        )
