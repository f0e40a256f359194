"""Push delivery: POST a signed envelope to a supplier over mutual TLS.

The ICC presents its client certificate and accepts only the server
certificate registered (pinned) for the supplier; the pin is checked inside
the TLS handshake (:func:`simulator.vocabulary.tls.client_context`), so not one byte of
the envelope reaches a server that presents another certificate.  With a CRL
(``PushClient(crl=...)``) a revoked server certificate fails the handshake
too; the context is rebuilt when the CRL file changes, so a revocation
applies from the next connection without a restart.

A redirect (3xx) is never followed: the registry is the only source of a
supplier's URL, and the envelope is addressed (``RECEIVER_URL``) to the URL
registered.  It is a refusal that names the new location, so the supplier's
registry entry is updated and the dead letter replayed (docs/icc.md).
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

import aiohttp

from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.tls import ContextCache, client_context

ENVELOPE_MEDIA_TYPE = "application/xml"
#: At most this many characters of an answer's body go into a detail (logs, the DLQ reason).
EXCERPT_CHARS = 200
#: At most this many of a problem document's code and detail (the DLQ reason keeps 500).
PROBLEM_CHARS = 400


class Outcome(Enum):
    """What one delivery attempt means for the message."""

    DELIVERED = "delivered"  # 2xx: the supplier has it; ack the broker message
    RETRY = "retry"  # may succeed later: connection error, timeout, 408, 429, 5xx
    REFUSED = "refused"  # the supplier will never take it: any other 4xx


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one POST."""

    outcome: Outcome
    status: int | None  # HTTP status, None if no answer
    detail: str  # receipt status, problem code or error, for logs and the DLQ
    retry_after: float | None = None  # seconds, from a Retry-After header
    receipt: str | None = None  # a 2xx receipt's status: accepted | duplicate (docs/openapi.yaml)
    latency_ms: int | None = None  # from sending the POST to its complete answer

    @property
    def reason(self) -> str:
        """The dead-letter reason of a last attempt: ``HTTP <status>: <detail>``, or the detail."""
        return f"HTTP {self.status}: {self.detail}" if self.status else self.detail


class PushClient:
    """Keeps one pinned TLS context and a pool of connections per supplier."""

    def __init__(
        self,
        *,
        ca_cert: Path,
        icc_cert: Path,
        icc_key: Path,
        timeout: float = 10.0,
        crl: Path | None = None,
        pin: bool = True,
    ) -> None:
        self._ca, self._cert, self._key, self._crl = ca_cert, icc_cert, icc_key, crl
        self._pin = pin  # False only with the test-only switch (icc_bridge/broken_on_purpose.py)
        self._contexts: dict[tuple[str, str], ContextCache] = {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=4, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _context(self, supplier: SupplierEntry) -> ssl.SSLContext:
        key = (supplier.org_number, supplier.cert_sha256)
        cache = self._contexts.get(key)
        if cache is None:
            pin = supplier.cert_sha256 if self._pin else None
            crl = self._crl

            def build() -> ssl.SSLContext:
                return client_context(self._cert, self._key, self._ca, pin_sha256=pin, crl=crl)

            cache = ContextCache(build, [crl] if crl is not None else [])
            self._contexts[key] = cache
        return cache.get()

    async def push(self, supplier: SupplierEntry, envelope: bytes) -> Attempt:
        """POST ``envelope`` to the supplier's URL and classify the answer."""
        assert self._session is not None, "start() first"
        sent = time.monotonic()
        try:
            async with self._session.post(
                supplier.url,
                data=envelope,
                headers={"Content-Type": ENVELOPE_MEDIA_TYPE, "Accept": "application/json"},
                ssl=self._context(supplier),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                answered = _classify(resp.status, resp.headers.get("Retry-After"), body)
                if 300 <= resp.status < 400:
                    answered = replace(answered, detail=_moved(resp.headers.get("Location")))
                latency = round((time.monotonic() - sent) * 1000)
                return replace(answered, latency_ms=latency)
        except aiohttp.ClientConnectorCertificateError as exc:
            # Nothing was sent.  Retried like any failure to connect: a certificate being
            # rotated, or renewed, may be right on a later attempt; if not, the policy
            # gives up and the message is dead-lettered with this reason.
            return Attempt(Outcome.RETRY, None, f"certificate refused: {exc.certificate_error}")
        except aiohttp.ClientSSLError as exc:
            return Attempt(Outcome.RETRY, None, f"TLS error: {exc}")
        except TimeoutError:  # before OSError: since Python 3.11 TimeoutError is an OSError
            limit = self._timeout.total
            return Attempt(
                Outcome.RETRY,
                None,
                f"timed out: no complete answer to the POST to {supplier.url} "
                f"within {limit:g} s (the ICC's request_timeout)",
            )
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}")


def _classify(status: int, retry_after: str | None, body: bytes) -> Attempt:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    detail = _detail(body, doc)
    if 200 <= status < 300:
        return Attempt(Outcome.DELIVERED, status, detail, receipt=_receipt_status(doc))
    if status in (408, 429) or status >= 500:
        return Attempt(Outcome.RETRY, status, detail, _retry_after_seconds(retry_after))
    return Attempt(Outcome.REFUSED, status, detail)


def _moved(location: str | None) -> str:
    """The detail of a redirect, which the ICC does not follow."""
    where = _excerpt(location) if location else "(no Location)"
    return f"moved to {where}; the ICC does not follow redirects: update the registry's url"


def _detail(body: bytes, doc: object) -> str:
    """The receipt status of a JSON answer (``doc``, the body parsed), a problem's code and
    detail (``CODE: detail``, so that the DLQ reason says what the supplier said), else a
    short excerpt of ``body``."""
    if isinstance(doc, dict):
        code, said = doc.get("code"), doc.get("detail")
        if isinstance(code, str) and isinstance(said, str) and said.strip():
            return _excerpt(f"{code}: {said}", limit=PROBLEM_CHARS)
        for key in ("status", "code", "title"):
            if isinstance(doc.get(key), str):
                return _excerpt(doc[key])
    head = body[: EXCERPT_CHARS * 4]
    return _excerpt(head.decode("utf-8", "replace"), cut=len(head) < len(body))


def _receipt_status(doc: object) -> str | None:
    """The ``status`` of a JSON receipt (accepted, duplicate), or None if it has none."""
    status = doc.get("status") if isinstance(doc, dict) else None
    return status if isinstance(status, str) else None


def _excerpt(text: str, *, cut: bool = False, limit: int = EXCERPT_CHARS) -> str:
    """``text`` as one printable line of at most ``limit`` characters (``cut``: it goes on)."""
    line = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not line:
        return "(no body)"
    if cut or len(line) > limit:
        return line[: limit - 1].rstrip() + "…"
    return line


def _retry_after_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
