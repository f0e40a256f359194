"""Benchmark (not a test): documents generated and validated per second, per type.

Usage: .venv/bin/python scripts/bench_documents.py [--count N] [--rules DIR]
The rules directory defaults to $B2BSIM_RULES_DIR, else the rule sets shipped with b2bsim.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from ka_producer.documents import DocumentFactory, GeneratedDocument, Seller, demo_sellers
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.validation import RULES_ENV, DocumentValidator, resolve_rules_dir

MAKERS: dict[str, Callable[[DocumentFactory, Seller], GeneratedDocument]] = {
    "order": lambda f, s: f.order(s),
    "invoice": lambda f, s: f.invoice(s, f.order(s)),
    "credit": lambda f, s: f.chain(s)[2],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500, help="documents per type (default 500)")
    parser.add_argument(
        "--rules", help=f"rules directory (default ${RULES_ENV}, else the shipped rule sets)"
    )
    args = parser.parse_args()
    try:
        rules = resolve_rules_dir(args.rules)
        validator = DocumentValidator(rules)
        started = time.perf_counter()
        validator.warm_up()
        compile_s = time.perf_counter() - started
        print(f"compile schemas and stylesheets (once per process): {compile_s:.2f} s")
    except B2BSimError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    sellers = demo_sellers(10)
    print(f"{'type':<8} {'generated/s':>12} {'validated/s':>12} {'ms/validation':>14}")
    for kind, make in MAKERS.items():
        # Generation: a fresh factory per document, as a chain of the type needs it.
        started = time.perf_counter()
        docs = [make(DocumentFactory(i), sellers[i % len(sellers)]) for i in range(args.count)]
        generated = args.count / (time.perf_counter() - started)
        started = time.perf_counter()
        invalid = sum(not validator.validate(d.xml).ok for d in docs)
        elapsed = time.perf_counter() - started
        print(
            f"{kind:<8} {generated:>12.0f} {args.count / elapsed:>12.1f} "
            f"{1000 * elapsed / args.count:>14.1f}" + (f"  ({invalid} INVALID)" if invalid else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
