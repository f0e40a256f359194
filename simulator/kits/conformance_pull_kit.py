"""What a pull conformance case works with: the puller under test, and the kit as its outbox.

:class:`PullTarget` is what to test (checked on construction): the
organisation number whose puller connects, where the kit listens, the
optional read-back.  :class:`PullKit` is the push kit
(:class:`~simulator.kits.conformance_kit.Kit`) with one change, so that every
push case runs unchanged for a puller: :meth:`PullKit.post` puts the envelope
in the kit's outbox (:mod:`simulator.kits.conformance_outbox`), waits until
the puller has fetched and acknowledged it, and answers with what the puller
did, as a :class:`PulledAnswer`: an acknowledged envelope is a receipt
(``accepted``, or ``duplicate`` when its envelope id was acknowledged before;
with a read-back, only once the ledger lists it exactly once), an envelope in
the acknowledgement's ``refused`` list is a refusal with the HTTP status of
its code (docs/openapi.yaml), and one that was never fetched or acknowledged
is no answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from simulator.kits.conformance_kit import DEFAULT_BURST, MAX_BURST, Answer, Kit
from simulator.kits.conformance_outbox import Item, KitOutbox
from simulator.runs.endpoint import ExternalEndpoint, read_ledger
from simulator.vocabulary.certs import cert_sha256
from simulator.vocabulary.codes import Kind, entry_for
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import normalise_org_number, validate_org_number
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.problems import PROBLEM_MEDIA_TYPE
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import normalise_pin

__all__ = ["PULL_TIMEOUT", "PullKit", "PullTarget", "PulledAnswer", "parse_listen"]

#: How long the kit waits, by default, for each thing the puller must do.
PULL_TIMEOUT = 30.0
#: After the read-back first lists an envelope, how long a second load may take to show.
LOAD_SETTLE = 0.3
_ID = re.compile(rb"InstanceIdentifier>([^<]{1,100})</")
_TYPE = re.compile(b"|".join(t.value.encode() for t in MessageType))


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0: a free one) → (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            f"--listen {value!r} is not HOST:PORT",
            hint="give the address the puller connects to, e.g. --listen 127.0.0.1:9600",
        )
    return host, int(port)


@dataclass(frozen=True)
class PullTarget:
    """The puller to test and where the kit waits for it; checked on construction.

    ``pin`` is the SHA-256 of the certificate the puller must present: by
    default the one the state directory's registry holds for the organisation
    number, else its certificate in ``STATE/pki/suppliers/``.
    """

    state: StateDir
    org_number: str
    host: str
    port: int
    pin: str | None = None
    readback: str | None = None  # the supplier's read-back URL (GET /b2b/ledger)
    readback_ca: Path | None = None  # the CA of the read-back's certificate (default: AF's)
    timeout: float = PULL_TIMEOUT
    seed: int = 1
    case_ids: tuple[str, ...] | None = None
    burst: int = DEFAULT_BURST
    publish_crl: bool | None = None  # None: only when the kit listens on a loopback address

    def __post_init__(self) -> None:
        org = validate_org_number(normalise_org_number(self.org_number))
        object.__setattr__(self, "org_number", org)
        state = self.state
        for what, path in (
            ("the AF test CA", state.ca_cert),
            ("the ICC's certificate", state.icc_cert),
            ("the ICC's key", state.icc_key),
        ):
            if not path.is_file():
                raise ConfigError(
                    f"no {what} at {path}",
                    hint="give the state directory AF gave you with --state, or b2bsim pki init",
                )
        if self.pin is not None:
            object.__setattr__(self, "pin", normalise_pin(self.pin))
        else:
            object.__setattr__(self, "pin", _registered_pin(state, org))
        if not (self.timeout > 0):
            raise ConfigError(f"timeout {self.timeout!r} is not positive", hint="e.g. 30")
        if self.seed < 0:
            raise ConfigError(f"seed {self.seed} is negative", hint="use a seed of 0 or more")
        if not 1 <= self.burst <= MAX_BURST:
            raise ConfigError(
                f"burst {self.burst} is not from 1 to {MAX_BURST}",
                hint=f"give the month-end burst's size, e.g. {DEFAULT_BURST}",
            )
        if self.readback is not None and not self.readback.startswith("https://"):
            raise ConfigError(
                f"--readback {self.readback!r} is not an https URL",
                hint="give the supplier's read-back, e.g. https://supplier.example:8443/b2b/ledger",
            )

    @property
    def puller_pin(self) -> str:
        assert self.pin is not None  # set in __post_init__
        return self.pin

    def readback_endpoint(self) -> ExternalEndpoint | None:
        """The read-back as :mod:`simulator.runs.endpoint` reads it (as the ICC, mutual TLS)."""
        if self.readback is None:
            return None
        ca = self.readback_ca or self.state.ca_cert
        return ExternalEndpoint(self.readback, ca, self.org_number, readback=self.readback)


def _registered_pin(state: StateDir, org: str) -> str:
    if state.registry.is_file():
        registry = Registry.load(state.registry)
        if org in registry:
            return registry.lookup(org).cert_sha256
    cert = state.supplier_cert(org)
    if not cert.is_file():
        raise ConfigError(
            f"unknown organisation number {org}: neither {state.registry} nor "
            f"{cert.parent} has a certificate for it",
            hint="give the organisation number of a supplier of this state directory "
            "(b2bsim pki init --suppliers N makes them), or its pin with --target-cert-sha256",
        )
    return cert_sha256(cert)


@dataclass(frozen=True)
class PulledAnswer(Answer):
    """What the puller did with one envelope, in the shape of a push answer."""

    said: str = ""

    def describe(self) -> str:
        return self.said or super().describe()


@dataclass
class PullKit(Kit):
    """The push kit whose :meth:`post` serves the envelope to the puller instead."""

    outbox: KitOutbox = field(kw_only=True)
    wait: float = field(default=PULL_TIMEOUT, kw_only=True)
    readback: ExternalEndpoint | None = field(default=None, kw_only=True)
    acknowledged: set[str] = field(default_factory=set, kw_only=True)
    # The running case's envelopes must be refused: an acknowledged one is not read back.
    expects_refusal: bool = field(default=False, kw_only=True)

    async def post(
        self,
        body: bytes,
        *,
        client: object = None,
        content_type: str = "application/xml",
    ) -> Answer:
        """Serve ``body`` in the outbox; what the puller did with it (``client`` is unused)."""
        return await self.settle(self.add(body))

    def add(self, body: bytes) -> Item:
        """Put ``body`` in the outbox under the envelope id it carries (a new one if none)."""
        found = _ID.search(body)
        envelope_id = found.group(1).decode(errors="replace") if found else str(uuid.uuid4())
        kind = _TYPE.search(body)
        message_type = kind.group(0).decode() if kind else MessageType.INKOPSORDER.value
        return self.outbox.add(body, envelope_id, message_type)

    async def settle(self, item: Item, *, wait: float | None = None) -> PulledAnswer:
        """Wait until the puller acknowledged ``item``; its answer."""
        seconds = self.wait if wait is None else wait
        await self.outbox.wait(lambda: item.settled, seconds)
        if not item.settled:
            said = (
                f"fetched but not acknowledged within {seconds:g} s"
                if item.served
                else f"not fetched within {seconds:g} s"
            )
            return PulledAnswer(None, error=said, said=said)
        if item.refusal is not None:
            return _refused(item)
        duplicate = item.envelope_id in self.acknowledged
        self.acknowledged.add(item.envelope_id)
        said = (
            "acknowledged again (a duplicate), not listed as refused"
            if duplicate
            else "acknowledged, not listed as refused"
        )
        problem = None if self.expects_refusal else await self.load_problem(item.envelope_id)
        if problem is not None:
            return PulledAnswer(500, said=f"{said}, but {problem}")
        if self.readback is not None and not self.expects_refusal:
            said += ", loaded once"
        status = "duplicate" if duplicate else "accepted"
        receipt = json.dumps({"status": status, "envelope_id": item.envelope_id})
        return PulledAnswer(200 if duplicate else 201, "application/json", receipt, said=said)

    async def load_problem(self, *envelope_ids: str) -> str | None:
        """With a read-back: None if each envelope is listed exactly once, else what is wrong."""
        if self.readback is None or not envelope_ids:
            return None
        wanted = set(envelope_ids)
        deadline = time.monotonic() + self.wait
        counts = await self._counts(wanted)
        while any(counts[i] == 0 for i in wanted) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            counts = await self._counts(wanted)
        await asyncio.sleep(LOAD_SETTLE)
        counts = await self._counts(wanted)
        missing = sorted(i for i in wanted if counts[i] == 0)
        twice = sorted(i for i in wanted if counts[i] > 1)
        if missing:
            return (
                f"the read-back does not list {_some(missing)} after {self.wait:g} s (not loaded)"
            )
        if twice:
            return f"the read-back lists {_some(twice)} {counts[twice[0]]} times (loaded twice)"
        return None

    async def _counts(self, wanted: set[str]) -> dict[str, int]:
        assert self.readback is not None
        entries = await asyncio.to_thread(read_ledger, self.target.state, self.readback)
        counts = dict.fromkeys(wanted, 0)
        for entry in entries:
            if entry.envelope_id in counts:
                counts[entry.envelope_id] += 1
        return counts


def _some(ids: list[str]) -> str:
    first = f"envelope {ids[0]}"
    return first if len(ids) == 1 else f"{len(ids)} envelopes (first {ids[0]})"


def _refused(item: Item) -> PulledAnswer:
    assert item.refusal is not None
    code, reason = item.refusal.code, item.refusal.reason
    entry = entry_for(code)
    known = entry is not None and entry.kind is Kind.REFUSAL and entry.status is not None
    status = entry.status if known and entry is not None and entry.status else 400
    label = code if known else f"{code!r} (not a code of docs/openapi.yaml)"
    said = f"refused {label}" + (f" ({reason[:100]})" if reason else "")
    body = json.dumps({"code": code, "detail": reason})
    return PulledAnswer(status, PROBLEM_MEDIA_TYPE, body, said=said)
