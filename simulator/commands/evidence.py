"""``b2bsim evidence verify FILE.zip``: check an evidence pack (docs/plan.md).

Exit 0 the signature, the chain to the AF test CA and every file's SHA-256
hold; 1 one line per finding (which file was changed, added or removed, or
what is wrong with the signature or the chain); 2 the file is no pack
(truncated, not a zip) or the CA is unreadable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.kits.evidence_verify import verify_pack
from simulator.vocabulary.state import StateDir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evidence", help="check a signed evidence pack (plan evidence)")
    verbs = p.add_subparsers(dest="evidence_command", metavar="VERB", required=True)
    v = verbs.add_parser("verify", help="check a pack's signature, chain and every hash")
    v.add_argument("pack", type=Path, metavar="FILE.zip")
    v.add_argument(
        "--ca", type=Path, metavar="FILE", help="the AF test CA (default: STATE/pki/ca.pem)"
    )
    v.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ca = args.ca or StateDir.resolve(args.state).ca_cert
    verified = verify_pack(args.pack, ca)
    for finding in verified.findings:
        print(finding)
    if verified.findings:
        print(f"{args.pack}: REFUSED, {len(verified.findings)} finding(s)")
        return 1
    m = verified.manifest
    print(
        f"{args.pack}: verified — signed by the evidence key of the AF test CA, "
        f"{verified.files} file(s) as listed; supplier {m['supplier']['org_number']} at "
        f"{m['endpoint']['url']}, seeds {m['seeds']}"
    )
    return 0
