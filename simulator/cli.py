"""The ``b2bsim`` command: one entry point for every part of the simulator.

Each sub-command lives in a module of :mod:`simulator.commands` with two
functions: ``add_parser(subparsers)`` declares it, ``run(args) -> int`` runs
it.  Exit codes: 0 success, 1 a check or scenario failed, 2 a usage or
configuration error (the message says what to do).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from simulator.vocabulary.errors import B2BSimError, BrokerError, ConfigError, PkiError
from simulator.vocabulary.logs import configure as configure_logs

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Command modules, in the order ``b2bsim --help`` lists them.
COMMANDS = [
    "run",
    "broker",
    "pki",
    "serve",
    "health",
    "dlq",
    "conformance",
    "scenario",
    "bench",
    "soak",
    "ui",
    "fault",
    "documents",
    "validate",
    "plan",
    "evidence",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b2bsim",
        description="Simulate Arbetsförmedlingen's B2B chain: KA → ActiveMQ → ICC → supplier.",
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        help="state directory: broker, PKI, registry, runs (default: $B2BSIM_STATE or .b2bsim)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"simulator.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logs(verbose=args.verbose, structured=args.command == "serve")
    try:
        code: int = args.func(args)
    except (ConfigError, PkiError, BrokerError) as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_USAGE
    except B2BSimError as exc:
        print(exc.one_line(), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
