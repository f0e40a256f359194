"""``b2bsim pki init|show|issue|rotate|revoke|crl``: the test PKI and its life cycle.

Every action prints paths, serial numbers and fingerprints, never a key.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from simulator.commands.pki_csr import (
    add_csr_options,
    check_csr_options,
    issue_csr,
    refuse_csr_supplier,
)
from simulator.lab.pki import (
    DEFAULT_HOSTS,
    ICC,
    IssuedCert,
    PkiSummary,
    SupplierIdentity,
    current_hosts,
    init_pki,
    issue_icc_cert,
    issue_supplier_cert,
    load_crl,
    numbered_suppliers,
    pki_summary,
    publish_crl,
    revoke_certificate,
    rotate_supplier_cert,
    supplier_identity,
)
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import normalise_org_number
from simulator.vocabulary.registry import Registry, SupplierEntry, update_registry_cert
from simulator.vocabulary.state import StateDir

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
        help="also write STATE/registry.json: supplier i at https://HOST:P+i/b2b/envelopes "
        "(default 9443; 0: do not write a registry)",
    )
    init.add_argument(
        "--registry-host",
        default=None,
        metavar="H",
        help="host name in the registry's URLs (default: the first --host, else 127.0.0.1; "
        "it must be one of --host)",
    )
    actions.add_parser("show", help="list the certificates with their SHA-256 fingerprints")
    _add_life_cycle(actions)
    parser.set_defaults(func=run)


def _add_life_cycle(actions: argparse._SubParsersAction[Any]) -> None:
    """Declare ``pki issue``, ``rotate``, ``revoke`` and ``crl``."""
    issue = actions.add_parser(
        "issue",
        help="issue a certificate for a supplier's CSR, or a new key and certificate for a "
        "supplier or the ICC (e.g. an expired one)",
        description=(
            "With --csr FILE --org-number ORG: certify the key of the supplier's CSR (the CA "
            "sets subject and SAN; the supplier's key never leaves it). Else replace the "
            "certificate of supplier ORG (or of the ICC: `icc`) with a new key and certificate "
            "from the existing CA. For a supplier, STATE/registry.json gets the new cert_sha256."
        ),
    )
    issue.add_argument("who", nargs="?", metavar="ORG|icc", help="organisation number, or icc")
    add_csr_options(issue)
    window = issue.add_mutually_exclusive_group()
    window.add_argument("--expired", action="store_true", help="valid from 2 days ago to 1 day ago")
    window.add_argument(
        "--not-after",
        metavar="TIME",
        help="ISO 8601 end of validity, e.g. 2020-01-31T00:00:00Z (before now: expired)",
    )
    window.add_argument(
        "--validity-days", type=int, default=365, metavar="D", help="validity (default 365)"
    )
    _host_option(issue)
    rotate = actions.add_parser(
        "rotate",
        help="give a supplier a new key and certificate and update the registry",
        description=(
            "Issue supplier ORG a new key and certificate (the previous pair is kept in "
            "pki/suppliers/previous/ and is not revoked) and update STATE/registry.json."
        ),
    )
    rotate.add_argument("who", metavar="ORG", help="organisation number")
    rotate.add_argument(
        "--validity-days", type=int, default=365, metavar="D", help="validity (default 365)"
    )
    _host_option(rotate)
    revoke = actions.add_parser(
        "revoke",
        help="put the current certificate of a supplier or the ICC on the CA's CRL",
        description="Revoke the current certificate of supplier ORG (or `icc`) and "
        "re-publish pki/crl.pem.",
    )
    revoke.add_argument("who", metavar="ORG|icc", help="organisation number, or icc")
    actions.add_parser(
        "crl",
        help="re-publish the CRL (renews its nextUpdate) and list the revoked serials",
    )


def _host_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="H",
        help="DNS name or IP for the SAN (repeatable; default: those of the current certificate)",
    )


def suppliers_from_args(args: argparse.Namespace) -> list[SupplierIdentity]:
    """The suppliers ``pki init`` should issue for, from --suppliers or --org-number."""
    if args.org_numbers:
        orgs = [normalise_org_number(o) for o in args.org_numbers]
        return [SupplierIdentity(org, f"Leverantör {org} AB") for org in orgs]
    return numbered_suppliers(DEFAULT_SUPPLIERS if args.suppliers is None else args.suppliers)


def run(args: argparse.Namespace) -> int:
    """Run ``pki init`` or ``pki show``; print paths and fingerprints, never keys."""
    state = StateDir.resolve(args.state)
    if args.pki_command in _LIFE_CYCLE:
        print(_LIFE_CYCLE[args.pki_command](state, args))
        return 0
    if args.pki_command == "init":
        hosts = tuple(args.hosts) if args.hosts else DEFAULT_HOSTS
        registry_host = _registry_host(args.registry_host, args.hosts)
        summary = init_pki(
            state,
            suppliers_from_args(args),
            validity_days=args.validity_days,
            hosts=hosts,
            force=args.force,
        )
        if args.base_port:
            write_registry(state, summary, args.base_port, registry_host)
    else:
        summary = pki_summary(state)
    print(format_summary(summary, show_status=args.pki_command == "init"))
    return 0


def _registry_host(explicit: str | None, hosts: list[str] | None) -> str:
    """The host of the registry's URLs: one the certificates name, so TLS checks pass."""
    if explicit is None:
        return hosts[0] if hosts else "127.0.0.1"
    named = hosts or list(DEFAULT_HOSTS)
    if explicit.lower() not in (h.lower() for h in named):
        raise ConfigError(
            f"--registry-host {explicit} is not a host of the certificates ({', '.join(named)})",
            hint=f"add --host {explicit}, or leave --registry-host out to use the first --host",
        )
    return explicit


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


def _parse_time(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--not-after {text!r} is not an ISO 8601 time", hint="e.g. 2020-01-31T00:00:00Z"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _issue(state: StateDir, args: argparse.Namespace) -> str:
    check_csr_options(args)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    if args.expired:
        not_before, not_after = now - dt.timedelta(days=2), now - dt.timedelta(days=1)
    elif args.not_after:
        not_after = _parse_time(args.not_after)
        not_before = min(now, not_after - dt.timedelta(days=1))
    if args.csr is not None:
        return issue_csr(state, args, (not_before, not_after))
    hosts = tuple(args.hosts) if args.hosts else None
    if args.who.strip().lower() == ICC:
        issued = issue_icc_cert(
            state,
            validity_days=args.validity_days,
            hosts=hosts,
            not_before=not_before,
            not_after=not_after,
        )
        return _issued_line("icc", issued)
    supplier = supplier_identity(state, args.who)
    refuse_csr_supplier(state, supplier.org_number)
    issued = issue_supplier_cert(
        state,
        supplier,
        validity_days=args.validity_days,
        hosts=hosts or current_hosts(state.supplier_cert(supplier.org_number)),
        not_before=not_before,
        not_after=not_after,
    )
    return _issued_line("supplier", issued) + _registry_line(state, issued)


def _rotate(state: StateDir, args: argparse.Namespace) -> str:
    hosts = tuple(args.hosts) if args.hosts else None
    issued = rotate_supplier_cert(state, args.who, validity_days=args.validity_days, hosts=hosts)
    return _issued_line("supplier", issued) + _registry_line(state, issued)


def _revoke(state: StateDir, args: argparse.Namespace) -> str:
    revoked = revoke_certificate(state, args.who)
    what = "already revoked" if revoked.already else "revoked"
    return (
        f"{what} {revoked.who} serial={revoked.serial:x} sha256={revoked.sha256} "
        f"at={revoked.revoked_at.isoformat()}\ncrl: {revoked.crl_path}"
    )


def _crl(state: StateDir, args: argparse.Namespace) -> str:
    path = publish_crl(state)
    crl = load_crl(path)
    lines = [f"crl: {path} next_update={crl.next_update_utc:%Y-%m-%dT%H:%M:%SZ}"]
    lines += [
        f"revoked serial={r.serial_number:x} at={r.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ}"
        for r in crl
    ]
    return "\n".join(lines)


_LIFE_CYCLE = {"issue": _issue, "rotate": _rotate, "revoke": _revoke, "crl": _crl}


def _issued_line(role: str, issued: IssuedCert) -> str:
    return (
        f"{role:<8} {issued.org_number:<10} issued  sha256={issued.sha256} "
        f"not_before={issued.not_before:%Y-%m-%dT%H:%M:%SZ} "
        f"not_after={issued.not_after:%Y-%m-%dT%H:%M:%SZ} {issued.cert_path}"
    )


def _registry_line(state: StateDir, issued: IssuedCert) -> str:
    if update_registry_cert(state.registry, issued.org_number, issued.sha256):
        return f"\nregistry: {state.registry} cert_sha256 of {issued.org_number} updated"
    return f"\nregistry: {issued.org_number} not in {state.registry}; nothing to update"
