"""The reference supplier integration point: an aiohttp HTTPS server.

One process serves many suppliers, **one port per supplier**: each supplier's
URL in the registry names its own port, and that port presents the
supplier's own AF-issued server certificate.  (One port with a certificate
per path cannot work: TLS picks the certificate before the path is known.)

An envelope's way through :meth:`SupplierStub._receive`:

1. TLS: the client must present a certificate from the AF test CA, and it
   must be an ICC certificate.
2. HTTP: ``POST /b2b/envelopes`` with ``Content-Type: application/xml`` and
   a body within the size limit.
3. Envelope: parsed by the hardened parser, the signature verified (it must
   cover the whole envelope and come from the ICC), the addressee checked
   against this port's supplier: organisation number, certificate, URL.
4. Document: validated against the official rules (by default the rule sets
   shipped with b2bsim; none with ``--no-validate``).
5. Store: once per envelope id, then the receipt: ``201 accepted``, ``200
   duplicate`` or ``409`` conflict.  Refusals are RFC 9457 problem details.
6. Ledger: each accepted envelope goes to :class:`~supplier_stub.ledger.Ledger`,
   which loads it in the producer's order (or holds it until its
   predecessor arrives; docs/supplier.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from simulator.vocabulary.certs import (
    CrlFile,
    is_icc_certificate,
    load_certificate,
    require_crl,
)
from simulator.vocabulary.codes.refusals import (
    BODY_TOO_LARGE,
    CLIENT_NOT_ICC,
    CLIENT_REVOKED,
    DOCUMENT_INVALID,
    ENVELOPE_CONFLICT,
    NOT_FOUND,
    UNSUPPORTED_MEDIA_TYPE,
)
from simulator.vocabulary.envelope import check_addressee, parse_envelope
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.http_problems import problem_response, problems_middleware
from simulator.vocabulary.httpguard import (
    GuardedTCPSite,
    SlowClientLimits,
    body_deadline,
    runner_kwargs,
)
from simulator.vocabulary.messages import now_ms
from simulator.vocabulary.problems import code_for
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import FileWatcher, peer_certificate
from simulator.vocabulary.verifier import EnvelopeVerifier
from simulator.vocabulary.xmlsafe import parse_xml
from supplier_stub.faults import FaultInjector
from supplier_stub.keys import OwnKeyPair, server_tls, supplier_key_pair
from supplier_stub.ledger import DEFAULT_GAP_TIMEOUT, Ledger
from supplier_stub.puller import DEFAULT_POLL_INTERVAL, Puller, PullerSettings
from supplier_stub.readback import LEDGER_PATH, ledger_handler
from supplier_stub.store import EnvelopeStore, ReceiptStatus

log = logging.getLogger(__name__)

ENVELOPE_PATH = "/b2b/envelopes"
DEFAULT_MAX_BODY = 2 * 1024 * 1024
DEFAULT_MAX_SKEW = 900.0
REGISTRY_POLL_SECONDS = 0.25

#: Checks a document; returns rule ids that failed fatally (empty: valid).
DocumentCheck = Callable[[bytes], Awaitable[list[str]]]


@dataclass
class StubConfig:
    """What one stub process serves."""

    registry: Path
    state: StateDir  # where the test PKI lives
    db: Path
    org_numbers: list[str] | None = None  # None: every supplier in the registry
    own_keys: OwnKeyPair | None = None  # serve its supplier with these files, not the state's
    bind_host: str = "127.0.0.1"
    max_body: int = DEFAULT_MAX_BODY
    document_check: DocumentCheck | None = None
    gap_timeout: float = DEFAULT_GAP_TIMEOUT  # seconds a message waits for its predecessor
    faults: Path | None = None  # a faults file a scenario writes (supplier_stub/faults.py)
    pull_url: str | None = None  # pull suppliers fetch here, not at their registry URL
    poll_interval: float = DEFAULT_POLL_INTERVAL  # seconds between polls of an empty outbox
    # A pushed envelope made further than this from our clock is refused (replays of old
    # envelopes, skewed clocks); it must exceed the ICC's retry max_age.  None: no window.
    max_skew: float | None = DEFAULT_MAX_SKEW
    limits: SlowClientLimits = field(default_factory=SlowClientLimits)
    # Broken on purpose, ONLY to prove the conformance kit fails them (docs/conformance.md):
    accept_unsigned: bool = False  # skip the envelope signature check entirely
    ignore_addressee: bool = False  # skip the organisation number / certificate / URL check
    suppliers: list[SupplierEntry] = field(default_factory=list, init=False)


class SupplierStub:
    """Serves suppliers' endpoints; ``await start()``, then ``await stop()``."""

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        registry = Registry.load(config.registry)
        wanted = config.org_numbers
        self.suppliers = (
            [registry.lookup(org) for org in wanted] if wanted is not None else list(registry)
        )
        self._by_port: dict[int, SupplierEntry] = {}
        for s in self.suppliers:
            if s.delivery_mode is DeliveryMode.PULL:
                continue  # fetched from the ICC's outbox by a Puller (supplier_stub/puller.py)
            port = _port_of(s.url)
            if port in self._by_port:
                raise B2BSimError(
                    f"suppliers {self._by_port[port].org_number} and {s.org_number} "
                    f"share port {port}",
                    hint="give each supplier its own port in the registry",
                )
            self._by_port[port] = s
        ca = config.state.ca_cert.read_bytes()
        crl = require_crl(config.state)
        self._crl = CrlFile(crl, load_certificate(config.state.ca_cert))
        self._verifier = EnvelopeVerifier(
            ca, accept_signer=is_icc_certificate, max_skew=config.max_skew, crl_path=crl
        )
        # A pulled envelope may wait in the ICC's outbox for long: no time window there
        # (the envelope id still makes a replay a duplicate).
        self._pull_verifier = EnvelopeVerifier(ca, accept_signer=is_icc_certificate, crl_path=crl)
        self._registry_watch = FileWatcher([config.registry])
        self._registry_watch.changed()  # the registry just loaded is the current one
        self._registry_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []  # watching the registry and the faults
        if config.accept_unsigned or config.ignore_addressee:
            log.warning(
                "BROKEN ON PURPOSE: accept_unsigned=%s ignore_addressee=%s (testing only)",
                config.accept_unsigned,
                config.ignore_addressee,
            )
        self._store = EnvelopeStore(config.db)
        self._ledger = Ledger(self._store, gap_timeout=config.gap_timeout)
        self._faults = (
            FaultInjector(config.faults, disk_full=self._store.refuse_growth)
            if config.faults is not None
            else None
        )
        self._runner: web.AppRunner | None = None
        self._pullers: list[tuple[asyncio.Task[None], asyncio.Event]] = []
        self.urls: list[str] = []

    async def start(self) -> list[str]:
        """Open the store and listen on every supplier's port; returns the URLs."""
        await self._store.open()
        await self._ledger.open()
        limits = self.config.limits
        middlewares: list[Middleware] = [
            problems_middleware(
                endpoint=ENVELOPE_PATH,
                internal="the envelope was not stored; the ICC may send it again",
            ),
            body_deadline(limits.body),
        ]
        if self._faults is not None:
            middlewares.append(self._faults.middleware(self._org_of))
        app = web.Application(client_max_size=self.config.max_body, middlewares=middlewares)
        app.router.add_post(ENVELOPE_PATH, self._receive)
        app.router.add_get("/health", self._health)
        app.router.add_get(LEDGER_PATH, ledger_handler(self.config.db, self._supplier_of))
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, **runner_kwargs(limits)
        )
        await self._runner.setup()
        state = self.config.state
        try:
            contexts = {port: self._tls(s, state) for port, s in self._by_port.items()}
            for port, supplier in self._by_port.items():
                await self._listen(port, supplier, contexts[port])
            self._start_pullers()
        except BaseException:
            await self.stop()
            raise
        self._ledger.start()
        self._tasks.append(asyncio.create_task(self._watch_registry(), name="registry"))
        if self._faults is not None:  # a disk-full rule applies with or without requests
            self._tasks.append(asyncio.create_task(self._faults.watch(), name="faults"))
        log.info("supplier stub serving %d suppliers", len(self.urls))
        return self.urls

    async def _listen(self, port: int, supplier: SupplierEntry, ctx: ssl.SSLContext) -> None:
        assert self._runner is not None
        site = GuardedTCPSite(
            self._runner, self.config.bind_host, port, ssl_context=ctx, limits=self.config.limits
        )
        try:
            await site.start()
        except OSError as exc:
            raise B2BSimError(
                f"cannot listen on {self.config.bind_host}:{port} for supplier "
                f"{supplier.org_number}: {exc.strerror}",
                hint="another process uses the port: stop it or change the registry URL",
            ) from None
        self.urls.append(supplier.url)

    async def _watch_registry(self) -> None:
        """Pick up a moved URL even before any request comes: the new port must listen."""
        while True:
            await asyncio.sleep(REGISTRY_POLL_SECONDS)
            await self._refresh_registry()

    async def _refresh_registry(self) -> None:
        """Apply the registry file if it changed.

        A rotated certificate replaces the supplier's entry at once.  A moved
        URL opens the new port as well; the old one keeps serving envelopes
        already addressed to the old URL (in flight, or being retried).
        """
        async with self._registry_lock:
            if not self._registry_watch.changed():
                return
            try:
                fresh = {s.org_number: s for s in Registry.load(self.config.registry)}
            except B2BSimError as exc:
                log.error("keeping the old registry: %s", exc)
                return
            for port, old in list(self._by_port.items()):
                new = fresh.get(old.org_number)
                if new is None or new.delivery_mode is not DeliveryMode.PUSH:
                    continue
                if new.url == old.url:
                    self._by_port[port] = new
                    continue
                new_port = _port_of(new.url)
                if new_port in self._by_port:
                    continue  # already moved there
                try:
                    await self._listen(new_port, new, self._tls(new, self.config.state))
                except B2BSimError as exc:
                    log.error("cannot follow the move of %s: %s", new.org_number, exc)
                    continue
                self._by_port[new_port] = new
                log.info("supplier %s moved to %s", new.org_number, new.url)
            log.info("registry reloaded from %s", self.config.registry)

    def _tls(self, supplier: SupplierEntry, state: StateDir) -> ssl.SSLContext:
        return server_tls(supplier, state, self.config.own_keys)

    def _start_pullers(self) -> None:
        """One Puller per pull supplier: same receive path, store and ledger as a push."""
        for s in self.suppliers:
            if s.delivery_mode is DeliveryMode.PULL:
                settings = PullerSettings.for_supplier(s, self.config.state, self.config.pull_url)
                cert, key = supplier_key_pair(self.config.state, s.org_number, self.config.own_keys)
                settings = replace(
                    settings, poll_interval=self.config.poll_interval, cert=cert, key=key
                )
                puller = Puller(s, settings, ingest=self._ingest_pulled, store=self._store)
                stop = asyncio.Event()
                task = asyncio.create_task(puller.run(stop), name=f"pull-{s.org_number}")
                self._pullers.append((task, stop))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for task, stop in self._pullers:  # an unacked page is fetched again next start
            stop.set()
            task.cancel()
        await asyncio.gather(*(task for task, _ in self._pullers), return_exceptions=True)
        self._pullers.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._ledger.close()
        await self._store.close()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "suppliers": len(self.suppliers)})

    async def _receive(self, request: web.Request) -> web.Response:
        supplier = self._supplier_of(request)
        if supplier is None:
            return _refuse(request, None, NOT_FOUND, "no supplier is served on this port")
        client = peer_certificate(request)
        if client is None or not is_icc_certificate(client):
            detail = "only the ICC may deliver envelopes here"
            return _refuse(request, supplier, CLIENT_NOT_ICC, detail, logging.WARNING)
        if self._crl.revoked(client):  # per request: a revocation also ends kept-alive connections
            detail = "the client certificate is revoked"
            return _refuse(request, supplier, CLIENT_REVOKED, detail, logging.WARNING)
        if request.content_type != "application/xml":
            detail = f"got {request.content_type!r}"
            return _refuse(request, supplier, UNSUPPORTED_MEDIA_TYPE, detail)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            detail = f"the limit is {self.config.max_body} bytes"
            return _refuse(request, supplier, BODY_TOO_LARGE, detail)
        return await self.ingest(supplier, raw)

    async def _ingest_pulled(self, supplier: SupplierEntry, raw: bytes) -> web.Response:
        return await self.ingest(supplier, raw, pulled=True)

    async def ingest(
        self, supplier: SupplierEntry, raw: bytes, *, pulled: bool = False
    ) -> web.Response:
        """Verify, check the addressee, store once, offer to the ledger: pushed and pulled alike."""
        supplier = await self._current(supplier)
        verifier = self._pull_verifier if pulled else self._verifier
        try:
            if self.config.accept_unsigned:  # broken on purpose (StubConfig)
                parsed = parse_envelope(parse_xml(raw, max_bytes=self.config.max_body))
            else:
                parsed = verifier.open_parsed(raw, max_bytes=self.config.max_body)
            envelope = parsed.envelope
            if not self.config.ignore_addressee:  # broken on purpose (StubConfig)
                check_addressee(
                    envelope,
                    org_number=supplier.org_number,
                    cert_sha256=supplier.cert_sha256,
                    url=supplier.url,
                )
        except B2BSimError as exc:
            log.info("refused org=%s code=%s detail=%s", supplier.org_number, exc.code, exc)
            return problem_response(code_for(exc), str(exc))
        if self.config.document_check is not None:
            failed = await self.config.document_check(envelope.document)
            if failed:
                log.info(
                    "refused code=%s org=%s envelope_id=%s rules=%s",
                    DOCUMENT_INVALID,
                    supplier.org_number,
                    envelope.envelope_id,
                    ",".join(failed),
                )
                return problem_response(
                    DOCUMENT_INVALID,
                    f"the document fails {len(failed)} rule(s)",
                    envelope_id=envelope.envelope_id,
                    rule_ids=failed,
                )
        # The document was parsed once, with the envelope: the ledger reads its ids from that tree.
        receipt = await self._ledger.receive(envelope, raw, now_ms(), document=parsed.document)
        log.info(
            "%s envelope_id=%s message_id=%s org=%s",
            receipt.status,
            envelope.envelope_id,
            envelope.message_id,
            supplier.org_number,
        )
        if receipt.status is ReceiptStatus.CONFLICT:
            return problem_response(
                ENVELOPE_CONFLICT,
                "an envelope with this id and another document was received before",
                envelope_id=envelope.envelope_id,
            )
        body = {
            "envelope_id": receipt.envelope_id,
            "received_at": _iso(receipt.received_at_ms),
            "status": receipt.status.value,
        }
        status = 201 if receipt.status is ReceiptStatus.ACCEPTED else 200
        return web.json_response(body, status=status)

    async def _current(self, supplier: SupplierEntry) -> SupplierEntry:
        """The supplier as the registry says now: a rotated certificate applies at once.

        Of a supplier that moved, the entry of the port the envelope came to.
        """
        await self._refresh_registry()
        if any(s is supplier for s in self._by_port.values()):
            return supplier
        return next(
            (s for s in self._by_port.values() if s.org_number == supplier.org_number), supplier
        )

    def _org_of(self, request: web.Request) -> str | None:
        supplier = self._supplier_of(request)
        return supplier.org_number if supplier else None

    def _supplier_of(self, request: web.Request) -> SupplierEntry | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        return self._by_port.get(sockname[1]) if sockname else None


def _refuse(
    request: web.Request,
    supplier: SupplierEntry | None,
    code: str,
    detail: str,
    level: int = logging.INFO,
) -> web.Response:
    """A refusal before the envelope is read, logged here once (never a body or a key)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport else None
    sockname = transport.get_extra_info("sockname") if transport else None
    log.log(
        level,
        "refused code=%s org=%s port=%s peer=%s: %s",
        code,
        supplier.org_number if supplier else None,
        sockname[1] if sockname else None,
        peer,
        detail,
    )
    return problem_response(code, detail)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _port_of(url: str) -> int:
    return urlsplit(url).port or 443


async def serve_forever(config: StubConfig, stop: asyncio.Event) -> None:
    """Run a stub until ``stop`` is set (used by ``b2bsim serve supplier-stub``)."""
    stub = SupplierStub(config)
    urls = await stub.start()
    print(json.dumps({"event": "ready", "component": "supplier-stub", "urls": urls}), flush=True)
    try:
        await stop.wait()
    finally:
        await stub.stop()
