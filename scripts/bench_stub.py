"""Benchmark (not a test): the supplier stub's CPU per envelope, the stub driven alone.

Usage: .venv/bin/python scripts/bench_stub.py [--per-round N] [--rounds R] [--stored N]
       [--poll] [--worktree DIR]

Starts ``b2bsim serve supplier-stub`` (without document rules) for 100
suppliers, signs 100 + N × R self-invoice envelopes up front in this process,
opens one TLS connection per supplier with one envelope each (not measured),
then pushes N envelopes per round over 100 lanes, each lane one envelope at
a time (as the ICC does), and reports the stub process's CPU (user + system,
/proc) per envelope: each round's, and their median, user and system
apart, and the stub's resident set after each round.  ``--stored N``
first fills the stub's database with N envelopes (each a copy of a real
signed one under new ids, with its arrival and ledger rows, as the stub
writes them, N / 100 for each supplier: the pushed envelopes follow on in
sequence), so that
the stub is measured with a ledger of that size without sending N
envelopes through it.  ``--poll`` reads the ledger's row count every
0.25 s from another connection meanwhile, as ``b2bsim bench`` does while
it waits for the ledger.  ``--worktree DIR``
runs the stub of another checkout (DIR/.venv/bin/b2bsim if it has one, else
this Python with PYTHONPATH=DIR; run from outside both checkouts then).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from icc_bridge.delivery import Outcome, PushClient
from ka_producer import documents_for
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.lab.pki import numbered_suppliers
from simulator.runs.run_setup import init_run_suppliers
from simulator.runs.stub_records import ledger_count
from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.messages import MessageMeta, MessageType, now_ms
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir

SUPPLIERS = 100
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--per-round", type=int, default=2000, help="envelopes a round (2000)")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (4)")
    parser.add_argument("--stored", type=int, default=0, help="envelopes stored before (0)")
    parser.add_argument("--poll", action="store_true", help="count the ledger every 0.25 s")
    parser.add_argument("--worktree", type=Path, help="run this checkout's stub")
    args = parser.parse_args()
    per_lane = max(1, args.per_round // SUPPLIERS)
    run = Path(tempfile.mkdtemp(prefix="b2bsim-bench-stub-"))
    try:
        rounds = _bench(run, per_lane, args)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    total = [r.user + r.system for r in rounds]
    print(
        f"stub CPU per envelope ({args.stored} stored before): median "
        f"{statistics.median(total):.3f} ms; rounds {', '.join(f'{f:.3f}' for f in total)} ms "
        f"({per_lane * SUPPLIERS} each); user {', '.join(f'{r.user:.3f}' for r in rounds)}; "
        f"system {', '.join(f'{r.system:.3f}' for r in rounds)}; "
        f"RSS {', '.join(f'{r.rss_mib:.0f}' for r in rounds)} MiB"
    )
    return 0


@dataclass(frozen=True)
class Round:
    user: float  # ms of user CPU per envelope
    system: float  # ms of system CPU per envelope
    rss_mib: float  # the stub's resident set after the round


def _cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _bench(run: Path, per_lane: int, args: argparse.Namespace) -> list[Round]:
    rounds, worktree = args.rounds, args.worktree
    before = args.stored // SUPPLIERS  # each supplier's envelopes stored before
    identities = numbered_suppliers(SUPPLIERS)
    state, _ = init_run_suppliers(run, identities)
    registry = Registry.load(run / "registry.json")
    (run / "faults.json").write_text('{"rules": []}\n')
    signer = EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes())
    factory = DocumentFactory(1)
    lanes: dict[str, list[bytes]] = {}
    for s in identities:
        entry = registry.lookup(s.org_number)
        seller = seller_profile(s.org_number, s.name)
        docs = [documents_for(factory, seller, doc_type="invoice")[0].xml for _ in range(3)]
        lanes[s.org_number] = [
            signer.sign(
                Envelope.create(
                    MessageMeta.new(MessageType.SJALVFAKTURA, s.org_number, seq),
                    docs[seq % 3],
                    receiver_cert_sha256=entry.cert_sha256,
                    receiver_url=entry.url,
                )
            )
            for seq in range(before + 1, before + 2 + per_lane * rounds)
        ]
    if worktree is not None and (worktree / ".venv").exists():
        command, env = [str(worktree / ".venv" / "bin" / "b2bsim")], dict(os.environ)
    elif worktree is not None:
        command = [sys.executable, "-m", "simulator.cli"]
        env = dict(os.environ, PYTHONPATH=str(worktree))
    else:
        command, env = [sys.executable, "-m", "simulator.cli"], dict(os.environ)
    serve = ["--state", str(run), "serve", "supplier-stub", "--no-validate"]
    serve += ["--registry", str(run / "registry.json"), "--db", str(run / "stub.sqlite")]
    serve += ["--faults", str(run / "faults.json")]
    if before:  # the stub creates its tables, then they are filled
        _start(command + serve, env, run).terminate()
        _prefill(run / "stub.sqlite", lanes, before)
    proc = _start(command + serve, env, run)
    try:
        return asyncio.run(
            _push(
                state,
                registry,
                lanes,
                pid=proc.pid,
                per_lane=per_lane,
                rounds=rounds,
                poll=run / "stub.sqlite" if args.poll else None,
            )
        )
    finally:
        proc.terminate()
        proc.wait()


class _Stub:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.pid = proc, proc.pid

    def terminate(self) -> None:
        self.proc.terminate()
        self.proc.wait()

    def wait(self) -> None:
        self.proc.wait()


def _start(command: list[str], env: dict[str, str], run: Path) -> _Stub:
    with (run / "stub.log").open("a") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    assert proc.stdout is not None
    if "ready" not in proc.stdout.readline():
        proc.terminate()
        raise SystemExit(f"the stub did not start: see {run / 'stub.log'}")
    return _Stub(proc)


def _prefill(db_path: Path, lanes: dict[str, list[bytes]], per: int) -> None:
    """Store ``per`` envelopes of each supplier as the stub would have (loaded, sequences
    1 to ``per``, each a copy of the supplier's first signed envelope under new ids)."""
    start = now_ms() - 10 * per * len(lanes)
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN")
        for seq in range(1, per + 1):
            for k, (org, envs) in enumerate(lanes.items()):
                at = start + 10 * (seq * len(lanes) + k)
                eid, mid, doc = str(uuid.uuid4()), str(uuid.uuid4()), f"INV-{seq}"
                db.execute(
                    "INSERT INTO envelopes (envelope_id, org_number, message_id, message_type, "
                    "correlation_id, produced_at_ms, sequence, document_sha256, received_at_ms, "
                    "envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (eid, org, mid, "SJALVFAKTURA", mid, at, seq, "0" * 64, at, envs[0]),
                )
                db.execute(
                    "INSERT INTO arrivals (envelope_id, org_number, at_ms, outcome) "
                    "VALUES (?, ?, ?, 'accepted')",
                    (eid, org, at),
                )
                db.execute(
                    "INSERT INTO ledger (org_number, envelope_id, message_id, message_type, "
                    "document_id, produced_at_ms, sequence, received_at_ms, loaded_at_ms, late) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                    (org, eid, mid, "SJALVFAKTURA", doc, at, seq, at, at),
                )
        db.execute("COMMIT")  # (WAL: the stub's start turned it on)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


async def _push(
    state: StateDir,
    registry: Registry,
    lanes: dict[str, list[bytes]],
    *,
    pid: int,
    per_lane: int,
    rounds: int,
    poll: Path | None,
) -> list[Round]:
    push = PushClient(ca_cert=state.ca_cert, icc_cert=state.icc_cert, icc_key=state.icc_key)
    await push.start()

    async def lane(org: str, envelopes: list[bytes]) -> None:
        for raw in envelopes:
            attempt = await push.push(registry.lookup(org), raw)
            if attempt.outcome is not Outcome.DELIVERED:
                raise SystemExit(f"the stub did not take an envelope: {attempt.reason}")

    async def count_ledger(db: Path) -> None:
        while True:
            await asyncio.to_thread(ledger_count, db)
            await asyncio.sleep(0.25)

    figures = []
    poller = None if poll is None else asyncio.create_task(count_ledger(poll))
    try:
        await asyncio.gather(*(lane(org, envs[:1]) for org, envs in lanes.items()))
        for r in range(rounds):
            start, end = 1 + r * per_lane, 1 + (r + 1) * per_lane
            user, system = _cpu(pid)
            await asyncio.gather(*(lane(org, envs[start:end]) for org, envs in lanes.items()))
            user2, system2 = _cpu(pid)
            count = per_lane * len(lanes)
            figures.append(
                Round(
                    1000 * (user2 - user) / count, 1000 * (system2 - system) / count, _rss_mib(pid)
                )
            )
    finally:
        if poller is not None:
            poller.cancel()
        await push.close()
    return figures


if __name__ == "__main__":
    sys.exit(main())
