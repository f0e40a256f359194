"""``b2bsim documents generate``: write orders, self-billing invoices and credit notes as files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ka_producer.documents import (
    DocumentFactory,
    GeneratedDocument,
    Seller,
    demo_sellers,
    seller_profile,
)
from simulator.vocabulary.errors import ConfigError
from simulator.vocabulary.identifiers import normalise_org_number

TYPES = ("order", "invoice", "credit", "chain")
MAX_COUNT = 100_000
DEFAULT_SELLERS = 3


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Declare ``documents generate``."""
    parser = subparsers.add_parser(
        "documents",
        help="generate business documents (Peppol BIS Order 3.0, Self-Billing 3.0)",
        description="Generate the documents KA sends, as UBL 2.1 XML files.",
    )
    actions = parser.add_subparsers(dest="documents_command", metavar="ACTION", required=True)
    gen = actions.add_parser(
        "generate",
        help="write N documents of a type, one file per document named <id>.xml",
        description=(
            "Write N documents of one type, one file per document named by its id. "
            "An invoice follows an order and a credit note an invoice; only the asked "
            "type is written, except --type chain, which writes each linked set "
            "(order, invoice, credit note). The same seed gives byte-identical files."
        ),
    )
    gen.add_argument("--type", required=True, choices=TYPES, dest="doc_type")
    gen.add_argument("--count", type=int, default=1, metavar="N", help="documents (or chains)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    gen.add_argument("--out", required=True, metavar="DIR", help="directory to write into")
    who = gen.add_mutually_exclusive_group()
    who.add_argument(
        "--suppliers",
        type=int,
        metavar="N",
        help=f"spread over the N test suppliers of `pki init` (default {DEFAULT_SELLERS})",
    )
    who.add_argument(
        "--org-number",
        action="append",
        metavar="ORG[=NAME]",
        dest="org_numbers",
        help="a seller by organisation number, optionally with its name (repeatable)",
    )
    gen.set_defaults(func=run)


def sellers_from(args: argparse.Namespace) -> tuple[Seller, ...]:
    """The sellers named on the command line, or the numbered test suppliers."""
    if not args.org_numbers:
        return demo_sellers(args.suppliers if args.suppliers is not None else DEFAULT_SELLERS)
    sellers = []
    for spec in args.org_numbers:
        org, _, name = str(spec).partition("=")
        org = normalise_org_number(org)
        sellers.append(seller_profile(org, name.strip() or f"Leverantör {org} AB"))
    return tuple(sellers)


def generate(
    doc_type: str, count: int, seed: int, sellers: tuple[Seller, ...]
) -> list[GeneratedDocument]:
    """``count`` documents of ``doc_type`` (or ``count`` chains), sellers taken in turn."""
    if doc_type not in TYPES:
        raise ConfigError(f"unknown document type {doc_type!r}", hint=f"use one of {TYPES}")
    if not 1 <= count <= MAX_COUNT:
        raise ConfigError(f"--count {count} is out of range", hint=f"use 1 to {MAX_COUNT}")
    factory = DocumentFactory(seed)
    out: list[GeneratedDocument] = []
    for i in range(count):
        seller = sellers[i % len(sellers)]
        if doc_type == "order":
            out.append(factory.order(seller))
        elif doc_type == "invoice":
            out.append(factory.invoice(seller, factory.order(seller)))
        elif doc_type == "credit":
            out.append(factory.chain(seller)[2])
        else:
            out.extend(factory.chain(seller))
    return out


def run(args: argparse.Namespace) -> int:
    """Generate and write the documents; print one line per file and a summary."""
    documents = generate(args.doc_type, args.count, args.seed, sellers_from(args))
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for doc in documents:
            path = out / f"{doc.document_id}.xml"
            path.write_bytes(doc.xml)
            kind = doc.message_type.value
            print(f"{path}  {kind}  {doc.seller_org_number}  {doc.payable_amount} SEK")
    except OSError as exc:
        raise ConfigError(
            f"cannot write to {out}: {exc.strerror}", hint="choose a writable --out directory"
        ) from None
    print(f"wrote {len(documents)} documents to {out}")
    return 0
