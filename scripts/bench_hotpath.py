"""Benchmark (not a test): CPU of the ICC's and the supplier stub's steps per envelope.

Usage: .venv/bin/python scripts/bench_hotpath.py [--repeat R] [--count C] [--only NAME]

Each step runs C times in a row, R times; the figure is the median of the R
runs of ``time.process_time`` per call, in microseconds.  One self-invoice
of about 8 kB (KA's generator, seed 1), wrapped in an envelope of about
14 kB, signed with a fresh test PKI.  docs/performance.md says what the
steps are and what they measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from ka_producer import documents_for
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.vocabulary.certs import is_icc_certificate
from simulator.vocabulary.envelope import Envelope, format_timestamp, parse_timestamp
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.verifier import EnvelopeVerifier


def _median_us(fn: Callable[[], object], count: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(count):
            fn()
        runs.append((time.process_time() - t0) / count * 1e6)
    return statistics.median(runs)


def _median_async_us(
    make: Callable[[int], Awaitable[None]],
    count: int,
    repeat: int,
    loop: asyncio.AbstractEventLoop,
    at_once: int,
) -> float:
    """Median CPU per item of ``count`` ``make(i)`` coroutines, ``at_once`` at a time."""
    runs = []
    base = 0
    for _ in range(repeat):

        async def batch(start: int) -> None:
            for first in range(start, start + count, at_once):
                last = min(first + at_once, start + count)
                await asyncio.gather(*(make(i) for i in range(first, last)))

        t0 = time.process_time()
        loop.run_until_complete(batch(base))
        runs.append((time.process_time() - t0) / count * 1e6)
        base += count
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=7, help="runs of each step (default 7)")
    parser.add_argument("--count", type=int, default=200, help="calls per run (default 200)")
    parser.add_argument("--only", help="run only the steps whose name contains this")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="b2bsim-hotpath-"))
    state = StateDir(tmp / "state")
    (supplier,) = numbered_suppliers(1)
    init_pki(state, [supplier])
    org = supplier.org_number
    pin = cert_sha256(state.supplier_cert(org))
    url = "https://127.0.0.1:8443/b2b/envelopes"
    doc = documents_for(DocumentFactory(1), seller_profile(org, supplier.name), doc_type="invoice")
    body = doc[0].xml
    signer = EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes())
    verifier = EnvelopeVerifier(state.ca_cert.read_bytes(), accept_signer=is_icc_certificate)

    def envelope() -> Envelope:
        meta = MessageMeta.new(MessageType.SJALVFAKTURA, org, 1)
        return Envelope.create(meta, body, receiver_cert_sha256=pin, receiver_url=url)

    sample = envelope()
    signed = signer.sign(sample)
    stamp = format_timestamp(now_ms())
    steps: dict[str, Callable[[], object]] = {
        "icc: Envelope.create": envelope,
        "icc: EnvelopeSigner.sign": lambda: signer.sign(sample),
        "icc: create + sign": lambda: signer.sign(envelope()),
        "stub: EnvelopeVerifier.open_parsed": lambda: verifier.open_parsed(signed),
        "format_timestamp": lambda: format_timestamp(1_764_633_600_123),
        "parse_timestamp": lambda: parse_timestamp(stamp),
    }
    print(f"envelope {len(signed)} bytes, document {len(body)} bytes")
    for name, fn in steps.items():
        if args.only and args.only not in name:
            continue
        print(f"{name:44s} {_median_us(fn, args.count, args.repeat):8.1f} µs")
    if not args.only or "ledger" in args.only:
        _ledger(tmp, signed, verifier, args)
    return 0


def _ledger(tmp: Path, signed: bytes, verifier: EnvelopeVerifier, args: argparse.Namespace) -> None:
    """The stub's store-and-load (Ledger.receive), envelopes arriving ``count`` at a time."""
    from supplier_stub.ledger import Ledger
    from supplier_stub.store import EnvelopeStore

    parsed = verifier.open_parsed(signed)
    base = parsed.envelope
    loop = asyncio.new_event_loop()
    store = EnvelopeStore(tmp / "stub.sqlite")
    ledger = Ledger(store)
    loop.run_until_complete(store.open())
    loop.run_until_complete(ledger.open())
    from dataclasses import replace

    async def one(i: int) -> None:
        env = replace(
            base, envelope_id=str(uuid.uuid4()), message_id=str(uuid.uuid4()), sequence=i + 1
        )
        await ledger.receive(env, signed, now_ms(), document=parsed.document)

    for at_once in (1, 10, args.count):
        us = _median_async_us(one, args.count, args.repeat, loop, at_once)
        print(f"{'stub: Ledger.receive (' + str(at_once) + ' at once)':44s} {us:8.1f} µs")
    loop.run_until_complete(ledger.close())
    loop.run_until_complete(store.close())
    loop.close()


if __name__ == "__main__":
    sys.exit(main())
