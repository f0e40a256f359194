"""``b2bsim run --target FILE``: several external suppliers, push and pull, in one run.

The file's language is :mod:`simulator.runs.target_file`'s; here are the option,
what it may not be given with, and what the run says of each supplier before it
starts (docs/testing-your-endpoint.md, Several external suppliers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.endpoint_run import prepare_endpoint
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir

__all__ = ["add_target_option", "prepare_targets", "targets_of"]


def add_target_option(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--target",
        type=Path,
        metavar="FILE",
        help="several external suppliers: a YAML/JSON list (org_number, endpoint, endpoint_ca, "
        "optional endpoint_cert_sha256, readback, mode; a `mode: pull` entry has no endpoint, "
        "optionally endpoint_cert), the first is supplier 1; every puller fetches from the "
        "one outbox of --pull-port (docs/testing-your-endpoint.md)",
    )


def targets_of(args: argparse.Namespace, state: StateDir) -> tuple[ExternalEndpoint, ...]:
    """The external suppliers of ``--target FILE`` (checked, line-named errors), or ()."""
    if getattr(args, "target", None) is None:
        return ()
    alone = [
        name
        for name, value in (
            ("--endpoint", args.endpoint),
            ("--endpoint-ca", args.endpoint_ca),
            ("--org-number", args.org_number),
            ("--endpoint-cert-sha256", args.endpoint_cert_sha256),
            ("--readback", args.readback),
            ("--endpoint-mode pull", True if args.endpoint_mode == "pull" else None),
            ("--endpoint-cert", args.endpoint_cert),
        )
        if value is not None
    ]
    if alone:
        raise ConfigError(
            f"--target and {', '.join(alone)} both name external suppliers",
            hint="list every external supplier in the --target file (a puller with "
            "`mode: pull`), or use --endpoint alone",
        )
    from simulator.runs.target_file import read_target

    targets = tuple(
        read_target(
            args.target, state, pull_port=args.pull_port, pull_faults=not args.no_pull_faults
        )
    )
    for_pullers = [
        name
        for name, given in (
            ("--pull-port", args.pull_port is not None),
            ("--no-pull-faults", bool(args.no_pull_faults)),
        )
        if given
    ]
    if for_pullers and not any(t.mode == "pull" for t in targets):
        raise ConfigError(
            f"{', '.join(for_pullers)} only applies to a `mode: pull` entry of --target",
            hint="add `mode: pull` to the puller's entry, or leave the option out",
        )
    return targets


def prepare_targets(
    state: StateDir, targets: tuple[ExternalEndpoint, ...]
) -> tuple[ExternalEndpoint, ...]:
    """Check every external supplier of --target before anything starts; say where each
    is, and for a puller what it fetches from, what it trusts and what was registered."""
    checked = tuple(prepare_endpoint(state, t) for t in targets)
    for i, t in enumerate(checked, 1):
        if t.mode == "pull":
            print(
                f"external supplier {t.org_number} (supplier {i}) pulls from {t.url} "
                f"(trust {state.ca_cert}; its certificate sha256 {t.cert_sha256})",
                flush=True,
            )
        else:
            print(f"external supplier {t.org_number} (supplier {i}) at {t.url}", flush=True)
    return checked
