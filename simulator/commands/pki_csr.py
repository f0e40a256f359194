"""``b2bsim pki issue --csr FILE --org-number ORG``: AF certifies a supplier's own key.

The options are declared on ``pki issue`` (:mod:`simulator.commands.pki`);
:func:`issue_csr` runs them: the CA checks and certifies the CSR's key
(:mod:`simulator.lab.csr`), then the registry gets the new fingerprint
(:func:`~simulator.vocabulary.registry.register_supplier`; ``--url`` sets the
endpoint of a supplier it does not list yet, or moves one).  Every check,
the URL's included, runs before anything is written.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

from simulator.lab.csr import CsrIssued, is_issued_from_csr, issue_from_csr
from simulator.lab.pki import current_hosts
from simulator.vocabulary.errors import ConfigError, PkiError
from simulator.vocabulary.identifiers import normalise_org_number, validate_org_number
from simulator.vocabulary.registry import Registry, SupplierEntry, register_supplier
from simulator.vocabulary.state import StateDir

__all__ = ["add_csr_options", "check_csr_options", "issue_csr", "refuse_csr_supplier"]

_ONLY_WITH_CSR = ("org_number", "out", "url", "name")


def add_csr_options(issue: argparse.ArgumentParser) -> None:
    """The options of ``pki issue --csr``."""
    issue.add_argument(
        "--csr",
        type=Path,
        metavar="FILE",
        help="certify the key of this CSR (PEM or DER, made by the supplier) instead of making "
        "a key; needs --org-number (give no ORG|icc then)",
    )
    issue.add_argument(
        "--org-number", metavar="ORG", help="with --csr: the supplier's organisation number"
    )
    issue.add_argument(
        "--out", type=Path, metavar="FILE", help="with --csr: also write the certificate here"
    )
    issue.add_argument(
        "--url",
        metavar="URL",
        help="with --csr: the supplier's endpoint in the registry (needed for a supplier the "
        "registry does not list; default: the URL it has)",
    )
    issue.add_argument(
        "--name", metavar="NAME", help="with --csr: the supplier's name (default: the current one)"
    )


def check_csr_options(args: argparse.Namespace) -> None:
    """ConfigError for options of --csr given without it, or ORG|icc given with it."""
    if args.csr is None:
        given = [f"--{o.replace('_', '-')}" for o in _ONLY_WITH_CSR if getattr(args, o)]
        if given:
            raise ConfigError(f"{', '.join(given)}: only with --csr", hint="add --csr FILE")
        if args.who is None:
            raise ConfigError(
                "pki issue needs ORG, icc or --csr FILE --org-number ORG",
                hint="e.g. b2bsim pki issue --csr supplier.csr --org-number 5567891238",
            )
        return
    if args.who is not None:
        raise ConfigError(
            f"give --org-number {args.who} instead of {args.who} with --csr",
            hint="b2bsim pki issue --csr FILE --org-number ORG",
        )
    if args.org_number is None:
        raise ConfigError("--csr needs --org-number ORG", hint="the supplier's organisation number")


def refuse_csr_supplier(state: StateDir, org: str) -> None:
    """PkiError if AF does not hold this supplier's key: its renewal needs a new CSR."""
    if is_issued_from_csr(state, org):
        raise PkiError(
            f"supplier {org}'s certificate was issued from its CSR: AF holds no key of it",
            hint=f"renew it with a new CSR: b2bsim pki issue --csr NEW.csr --org-number {org} "
            "(--expired and --not-after work there too)",
        )


def issue_csr(
    state: StateDir,
    args: argparse.Namespace,
    window: tuple[dt.datetime | None, dt.datetime | None],
) -> str:
    """Run ``pki issue --csr``; the lines to print (paths and fingerprints, never a key)."""
    org = validate_org_number(normalise_org_number(args.org_number))
    hosts = tuple(args.hosts) if args.hosts else current_hosts(state.supplier_cert(org))
    _check_url(state, org, args.url, hosts)
    not_before, not_after = window
    done = issue_from_csr(
        state,
        args.csr,
        org,
        name=args.name,
        validity_days=args.validity_days,
        hosts=hosts,
        not_before=not_before,
        not_after=not_after,
        out=args.out,
    )
    outcome = register_supplier(state.registry, org, done.name, done.issued.sha256, args.url)
    return _lines(state, done, outcome)


def _check_url(state: StateDir, org: str, url: str | None, hosts: tuple[str, ...]) -> None:
    """Before issuing: a supplier new to the registry needs a URL, and its host must be a SAN."""
    listed = state.registry.is_file() and org in Registry.load(state.registry)
    if url is None:
        if not listed:
            raise ConfigError(
                f"supplier {org} is not in {state.registry}: the ICC needs its endpoint",
                hint="add --url https://HOST:PORT/b2b/envelopes (HOST one of the certificate's)",
            )
        return
    SupplierEntry(org_number=org, name="-", url=url, cert_sha256="0" * 64)  # checks the URL
    host = urlsplit(url).hostname or ""
    if host.lower() not in (h.lower() for h in hosts):
        raise ConfigError(
            f"--url host {host} is not a host of the certificate ({', '.join(hosts)})",
            hint=f"add --host {host} (repeat --host for every name the endpoint answers on)",
        )


def _lines(state: StateDir, done: CsrIssued, outcome: str) -> str:
    issued = done.issued
    lines = [
        f"supplier {issued.org_number:<10} issued  sha256={issued.sha256} key={done.key} "
        f"not_before={issued.not_before:%Y-%m-%dT%H:%M:%SZ} "
        f"not_after={issued.not_after:%Y-%m-%dT%H:%M:%SZ} {issued.cert_path}"
    ]
    if done.out is not None:
        lines.append(f"certificate for the supplier: {done.out}")
    if done.previous is not None:
        lines.append(f"previous certificate kept (not revoked): {done.previous}")
    lines.append(f"registry: {state.registry} {issued.org_number} {outcome}")
    return "\n".join(lines)
