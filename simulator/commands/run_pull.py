"""``b2bsim run --endpoint-mode pull``: the options of an external supplier that pulls.

Its puller fetches from the run's outbox (simulator/runs/pull_endpoint.py says how the
run learns its certificate and where the outbox is); docs/testing-your-endpoint.md, Pull.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.runs.endpoint import ExternalEndpoint
from simulator.runs.pull_endpoint import DEFAULT_PULL_PORT, pull_endpoint
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.state import StateDir

__all__ = ["add_pull_options", "pull_endpoint_of", "say_endpoint"]


def add_pull_options(e: argparse._ArgumentGroup) -> None:
    """``--endpoint-mode pull`` and its options (docs/testing-your-endpoint.md, Pull)."""
    e.add_argument(
        "--endpoint-mode",
        choices=("push", "pull"),
        default="push",
        help="push: the ICC POSTs to --endpoint; pull: the supplier's puller fetches from "
        "the run's outbox (default: push)",
    )
    e.add_argument(
        "--endpoint-cert",
        type=Path,
        metavar="FILE",
        help="pull: the certificate the puller presents (default: the supplier's in --state); "
        "in pull mode --endpoint-cert-sha256 pins the puller's certificate instead",
    )
    e.add_argument(
        "--pull-port",
        type=int,
        metavar="P",
        help="pull: serve the outbox at https://127.0.0.1:P/b2b/outbox "
        f"(default {DEFAULT_PULL_PORT}); every puller of --target fetches from it",
    )
    e.add_argument(
        "--no-pull-faults",
        action="store_true",
        help="pull: do not lose an acknowledgement nor answer 503 on purpose, to any puller "
        "(--target: each one's; those checks are then not exercised)",
    )


def pull_endpoint_of(args: argparse.Namespace, state: StateDir) -> ExternalEndpoint | None:
    """The external puller the options name (``--endpoint-mode pull``), or None."""
    pull_only = {
        "--endpoint-cert": args.endpoint_cert is not None,
        "--pull-port": args.pull_port is not None,
        "--no-pull-faults": args.no_pull_faults,
    }
    if args.endpoint_mode != "pull":
        given = [name for name, set_ in pull_only.items() if set_]
        if given:
            raise ConfigError(
                f"{', '.join(given)} only applies with --endpoint-mode pull",
                hint="add --endpoint-mode pull, or leave the option out",
            )
        return None
    if args.endpoint is not None:
        raise ConfigError(
            "--endpoint is the URL the ICC pushes to; a pulling supplier has none",
            hint="leave --endpoint out: its puller fetches from the run's outbox (--pull-port)",
        )
    if args.org_number is None:
        raise ConfigError(
            "--endpoint-mode pull needs --org-number too",
            hint="pass --org-number N (the supplier whose puller fetches; docs/onboarding.md)",
        )
    return pull_endpoint(
        state,
        org_number=args.org_number,
        cert=args.endpoint_cert,
        cert_sha256_hex=args.endpoint_cert_sha256,
        pull_port=args.pull_port,
        readback=args.readback,
        ca=args.endpoint_ca,
        pull_faults=not args.no_pull_faults,
    )


def say_endpoint(endpoint: ExternalEndpoint, state: StateDir) -> None:
    """Where the external supplier is; for a puller, what it fetches from and trusts."""
    if endpoint.mode != "pull":
        print(f"external supplier {endpoint.org_number} at {endpoint.url}", flush=True)
        return
    print(
        f"external supplier {endpoint.org_number} pulls from {endpoint.url} "
        f"(trust {state.ca_cert}; its certificate sha256 {endpoint.cert_sha256})",
        flush=True,
    )
