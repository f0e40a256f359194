"""``b2bsim pki init|show``: make and list the test PKI (paths and fingerprints only)."""

from __future__ import annotations

import argparse
from typing import Any

from simulator.errors import ConfigError
from simulator.identifiers import normalise_org_number
from simulator.pki import (
    DEFAULT_HOSTS,
    PkiSummary,
    SupplierIdentity,
    init_pki,
    numbered_suppliers,
    pki_summary,
)
from simulator.registry import Registry, SupplierEntry
from simulator.state import StateDir

DEFAULT_SUPPLIERS = 3


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Declare ``pki init`` and ``pki show``."""
    parser = subparsers.add_parser(
        "pki",
        help="make or show the test PKI (AF test CA, ICC and supplier certificates)",
        description="Make or show the test PKI in the state directory.",
    )
    actions = parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init",
        help="create the CA, the ICC's certificate and supplier certificates",
        description=(
            "Create what is missing: an existing CA and existing certificates are kept "
            "unless --force."
        ),
    )
    who = init.add_mutually_exclusive_group()
    who.add_argument(
        "--suppliers",
        type=int,
        metavar="N",
        help=f"make N test suppliers with generated organisation numbers "
        f"(default {DEFAULT_SUPPLIERS})",
    )
    who.add_argument(
        "--org-number",
        action="append",
        metavar="ORG",
        dest="org_numbers",
        help="make a supplier with this organisation number (repeatable)",
    )
    init.add_argument(
        "--validity-days", type=int, default=365, metavar="D", help="validity (default 365)"
    )
    init.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="H",
        help=f"DNS name or IP for the certificates' SAN (repeatable; "
        f"default {' '.join(DEFAULT_HOSTS)})",
    )
    init.add_argument("--force", action="store_true", help="replace the CA and every certificate")
    init.add_argument(
        "--base-port",
        type=int,
        default=9443,
        metavar="P",
        help="also write STATE/registry.json: supplier i at https://127.0.0.1:P+i/b2b/envelopes "
        "(default 9443; 0: do not write a registry)",
    )
    init.add_argument(
        "--registry-host",
        default="127.0.0.1",
        metavar="H",
        help="host name in the registry's URLs (default 127.0.0.1; it must be in --host)",
    )
    actions.add_parser("show", help="list the certificates with their SHA-256 fingerprints")
    parser.set_defaults(func=run)


def suppliers_from_args(args: argparse.Namespace) -> list[SupplierIdentity]:
    """The suppliers ``pki init`` should issue for, from --suppliers or --org-number."""
    if args.org_numbers:
        orgs = [normalise_org_number(o) for o in args.org_numbers]
        return [SupplierIdentity(org, f"Leverantör {org} AB") for org in orgs]
    return numbered_suppliers(DEFAULT_SUPPLIERS if args.suppliers is None else args.suppliers)


def run(args: argparse.Namespace) -> int:
    """Run ``pki init`` or ``pki show``; print paths and fingerprints, never keys."""
    state = StateDir.resolve(args.state)
    if args.pki_command == "init":
        summary = init_pki(
            state,
            suppliers_from_args(args),
            validity_days=args.validity_days,
            hosts=tuple(args.hosts) if args.hosts else DEFAULT_HOSTS,
            force=args.force,
        )
        if args.base_port:
            write_registry(state, summary, args.base_port, args.registry_host)
    else:
        summary = pki_summary(state)
    print(format_summary(summary, show_status=args.pki_command == "init"))
    return 0


def write_registry(
    state: StateDir, summary: PkiSummary, base_port: int, host: str = "127.0.0.1"
) -> None:
    """The registry for ``b2bsim serve``: one port per supplier from ``base_port``."""
    if not 1024 <= base_port <= 65535 - len(summary.suppliers):
        raise ConfigError(f"--base-port {base_port} is out of range", hint="use 1024 to 60000")
    entries = [
        SupplierEntry(
            org_number=info.org_number or "",
            name=info.subject,
            url=f"https://{host}:{base_port + i}/b2b/envelopes",
            cert_sha256=info.sha256,
        )
        for i, info in enumerate(summary.suppliers)
    ]
    Registry(entries).save(state.registry)
    print(f"registry: {state.registry} ({len(entries)} suppliers from port {base_port})")


def format_summary(summary: PkiSummary, *, show_status: bool = True) -> str:
    """One line per certificate: role, org number, [created/kept,] SHA-256, expiry, path."""
    lines = [f"test PKI in {summary.root}"]
    for info in summary.certificates:
        status = ("created " if info.created else "kept    ") if show_status else ""
        org = info.org_number or "-"
        lines.append(
            f"{info.role:<8} {org:<10} {status}sha256={info.sha256} "
            f"not_after={info.not_after:%Y-%m-%d} {info.path}"
        )
    return "\n".join(lines)
