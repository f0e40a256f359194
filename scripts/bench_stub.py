"""Benchmark (not a test): the supplier stub's CPU per envelope, the stub driven alone.

Usage: .venv/bin/python scripts/bench_stub.py [--per-round N] [--rounds R] [--worktree DIR]

Starts ``b2bsim serve supplier-stub`` (without document rules) for 100
suppliers, signs 100 + N × R self-invoice envelopes up front in this process,
opens one TLS connection per supplier with one envelope each (not measured),
then pushes N envelopes per round over 100 lanes, each lane one envelope at
a time (as the ICC does), and reports the stub process's CPU (user + system,
/proc) per envelope: each round's, and their median.  ``--worktree DIR``
runs the stub of another checkout (DIR/.venv/bin/b2bsim if it has one, else
this Python with PYTHONPATH=DIR; run from outside both checkouts then).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from icc_bridge.delivery import Outcome, PushClient
from ka_producer import documents_for
from ka_producer.documents import DocumentFactory, seller_profile
from simulator.kits.bench_procs import cpu_seconds
from simulator.lab.pki import numbered_suppliers
from simulator.runs.run_setup import init_run_suppliers
from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.messages import MessageMeta, MessageType
from simulator.vocabulary.registry import Registry
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir

SUPPLIERS = 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--per-round", type=int, default=2000, help="envelopes a round (2000)")
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds (4)")
    parser.add_argument("--worktree", type=Path, help="run this checkout's stub")
    args = parser.parse_args()
    per_lane = max(1, args.per_round // SUPPLIERS)
    run = Path(tempfile.mkdtemp(prefix="b2bsim-bench-stub-"))
    try:
        figures = _bench(run, per_lane, args.rounds, args.worktree)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    print(
        f"stub CPU per envelope: median {statistics.median(figures):.3f} ms; "
        f"rounds {', '.join(f'{f:.3f}' for f in figures)} ms ({per_lane * SUPPLIERS} each)"
    )
    return 0


def _bench(run: Path, per_lane: int, rounds: int, worktree: Path | None) -> list[float]:
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
            for seq in range(1, 2 + per_lane * rounds)
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
    with (run / "stub.log").open("w") as log:
        proc = subprocess.Popen(
            command + serve, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        try:
            assert proc.stdout is not None
            if "ready" not in proc.stdout.readline():
                raise SystemExit(f"the stub did not start: see {run / 'stub.log'}")
            return asyncio.run(
                _push(state, registry, lanes, pid=proc.pid, per_lane=per_lane, rounds=rounds)
            )
        finally:
            proc.terminate()
            proc.wait()


async def _push(
    state: StateDir,
    registry: Registry,
    lanes: dict[str, list[bytes]],
    *,
    pid: int,
    per_lane: int,
    rounds: int,
) -> list[float]:
    push = PushClient(ca_cert=state.ca_cert, icc_cert=state.icc_cert, icc_key=state.icc_key)
    await push.start()

    async def lane(org: str, envelopes: list[bytes]) -> None:
        for raw in envelopes:
            attempt = await push.push(registry.lookup(org), raw)
            if attempt.outcome is not Outcome.DELIVERED:
                raise SystemExit(f"the stub did not take an envelope: {attempt.reason}")

    figures = []
    try:
        await asyncio.gather(*(lane(org, envs[:1]) for org, envs in lanes.items()))
        for r in range(rounds):
            start, end = 1 + r * per_lane, 1 + (r + 1) * per_lane
            before = cpu_seconds(pid)
            await asyncio.gather(*(lane(org, envs[start:end]) for org, envs in lanes.items()))
            after = cpu_seconds(pid)
            assert before is not None
            assert after is not None
            figures.append(1000 * (after - before) / (per_lane * len(lanes)))
    finally:
        await push.close()
    return figures


if __name__ == "__main__":
    sys.exit(main())
