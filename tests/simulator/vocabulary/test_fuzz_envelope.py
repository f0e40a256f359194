"""Fuzzing EnvelopeVerifier.open with hypothesis: mutated signed envelopes never crash or forge.

Every input either opens to exactly the envelope that was signed (a mutation
that changes nothing signed, e.g. whitespace outside the signed element) or
is refused with a B2BSimError whose code is a documented problem code.

CI runs a few hundred examples; a benchmark-style run sets the count::

    B2BSIM_FUZZ_EXAMPLES=10000 .venv/bin/pytest -q tests/simulator/test_fuzz_envelope.py
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.lab.pki import crl_path, init_pki, is_icc_certificate, numbered_suppliers
from simulator.vocabulary.envelope import Envelope, normalise_document
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.messages import MessageType
from simulator.vocabulary.problems import PROBLEMS, code_for
from simulator.vocabulary.rulesets import SHIPPED_RULES_DIR
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.verifier import EnvelopeVerifier

EXAMPLES = int(os.environ.get("B2BSIM_FUZZ_EXAMPLES", "300"))
#: Wall time one example may take before hypothesis calls it a hang.
DEADLINE = dt.timedelta(seconds=10)
#: The official schemas and examples shipped in the package.
VALIDATION = SHIPPED_RULES_DIR
DOCUMENTS = {
    MessageType.INKOPSORDER: "Order_Example.xml",
    MessageType.SJALVFAKTURA: "SB-base-example.xml",
    MessageType.KREDIT: "SB-base-creditnote-correction.xml",
}
#: Fragments an attacker or a broken system might splice into XML.
XML_TOKENS = [
    b"<",
    b">",
    b"</",
    b"/>",
    b"<a>",
    b"</a>",
    b'<a b="c">',
    b"&amp;",
    b"&lt;",
    b"&xx;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<![CDATA[",
    b"]]>",
    b"<!-- c -->",
    b"<?pi x?>",
    b'<?xml version="1.0" encoding="UTF-16"?>',
    b'<!DOCTYPE e [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>',
    b'<!ENTITY a "aaaaaaaaaa">',
    b'xmlns="urn:x"',
    b'xmlns:ds="http://www.w3.org/2000/09/xmldsig#"',
    b"<ds:Signature>",
    b'<ds:Reference URI="#x">',
    b"<env:Envelope>",
    b"sbd:",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"=",
    b'"',
    b"'",
    b" ",
    b"\n",
    b"\t",
]


@dataclass(frozen=True)
class Signed:
    """The signed envelopes to mutate, what each must open to, and the verifier."""

    originals: list[tuple[bytes, Envelope]]
    verifier: EnvelopeVerifier

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Signed({len(self.originals)} envelopes)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """One signed envelope per message type, from a real test PKI, and a strict verifier."""
    # "Now" is taken here, after the PKI is made from the same clock, not at import:
    # a whole test session may pass between the two.
    state = StateDir(tmp_path_factory.mktemp("fuzz") / "state")
    supplier = numbered_suppliers(1)[0]
    summary = init_pki(state, [supplier])
    signer = EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes())
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    originals = []
    for sequence, (message_type, name) in enumerate(DOCUMENTS.items()):
        envelope = Envelope(
            envelope_id=f"fuzz-{sequence}",
            message_id=f"msg-{sequence}",
            correlation_id="corr-fuzz",
            message_type=message_type,
            org_number=supplier.org_number,
            receiver_cert_sha256=summary.supplier(supplier.org_number).sha256,
            receiver_url="https://127.0.0.1:9443/b2b/envelopes",
            produced_at_ms=int(created.timestamp() * 1000) - 1000,
            sequence=sequence,
            created_at_ms=int(created.timestamp() * 1000),
            document=normalise_document((VALIDATION / "examples" / name).read_bytes()),
        )
        originals.append((signer.sign(envelope), envelope))
    verifier = EnvelopeVerifier(
        state.ca_cert.read_bytes(),
        accept_signer=is_icc_certificate,
        clock=lambda: created,
        max_skew=600,
        crl_path=crl_path(state),
    )
    return Signed(originals, verifier)


@dataclass(frozen=True)
class Change:
    """One named change to a byte string (the name is what a failing example shows)."""

    name: str
    apply: Callable[[bytes], bytes]

    def __repr__(self) -> str:
        return self.name

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.name)


@st.composite
def _position(draw: st.DrawFn) -> float:
    """A relative position in the input, 0 to 1 (so one draw fits inputs of any length)."""
    return draw(st.floats(min_value=0, max_value=1, allow_nan=False))


def _at(data: bytes, where: float) -> int:
    return min(len(data), int(where * len(data)))


xmlish = st.lists(st.sampled_from(XML_TOKENS), min_size=1, max_size=12).map(b"".join)
texty = st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass"))
splice = st.one_of(xmlish, st.binary(min_size=1, max_size=64), texty)
#: Text that XML can carry (no control characters, no surrogates).
readable = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=40)


@st.composite
def mutation(draw: st.DrawFn) -> Change:
    """One named change to a byte string."""
    kind = draw(
        st.sampled_from(
            [
                *("flip", "truncate", "insert", "delete", "replace", "duplicate", "swap_case"),
                *("text", "text", "attribute", "attribute", "none"),
            ]
        )
    )
    where = draw(_position())
    if kind == "flip":
        mask = draw(st.integers(1, 255))

        def flip(d: bytes) -> bytes:
            i = min(len(d) - 1, _at(d, where))
            return d if not d else d[:i] + bytes([d[i] ^ mask]) + d[i + 1 :]

        return Change(f"flip@{where:.4f}^{mask}", flip)
    if kind == "truncate":
        return Change(f"truncate@{where:.4f}", lambda d: d[: _at(d, where)])
    if kind == "insert":
        extra = draw(splice)
        return Change(
            f"insert@{where:.4f}:{extra[:40]!r}",
            lambda d: d[: _at(d, where)] + extra + d[_at(d, where) :],
        )
    if kind == "delete":
        size = draw(st.integers(1, 300))
        return Change(
            f"delete@{where:.4f}+{size}",
            lambda d: d[: _at(d, where)] + d[_at(d, where) + size :],
        )
    if kind == "replace":
        extra, size = draw(splice), draw(st.integers(1, 80))
        return Change(
            f"replace@{where:.4f}+{size}:{extra[:40]!r}",
            lambda d: d[: _at(d, where)] + extra + d[_at(d, where) + size :],
        )
    if kind == "duplicate":
        size, to = draw(st.integers(1, 2000)), draw(_position())

        def duplicate(d: bytes) -> bytes:
            part = d[_at(d, where) : _at(d, where) + size]
            return d[: _at(d, to)] + part + d[_at(d, to) :]

        return Change(f"duplicate@{where:.4f}+{size}->{to:.4f}", duplicate)
    if kind == "swap_case":
        size = draw(st.integers(1, 64))
        return Change(
            f"swap_case@{where:.4f}+{size}",
            lambda d: (
                d[: _at(d, where)]
                + d[_at(d, where) : _at(d, where) + size].swapcase()
                + d[_at(d, where) + size :]
            ),
        )
    if kind in ("text", "attribute"):
        value = escape(draw(readable), {'"': "&quot;"}).encode("utf-8")
        opener, closer = (b">", b"<") if kind == "text" else (b'="', b'"')

        def rewrite(d: bytes) -> bytes:
            """Replace one element's text or one attribute's value: still well-formed XML."""
            i = d.find(opener, _at(d, where))
            j = d.find(closer, i + len(opener)) if i >= 0 else -1
            return d if j < 0 else d[: i + len(opener)] + value + d[j:]

        return Change(f"{kind}@{where:.4f}:{value[:40]!r}", rewrite)
    return Change("none", lambda d: d)


def _raw(data: bytes) -> list[Change]:
    """A "mutation" that throws the envelope away and sends ``data`` instead."""
    return [Change(f"raw:{data[:40]!r}", lambda _: data)]


#: (which original, -1 for none; the changes to apply to it)
Case = tuple[int, list[Change]]
_mutated = st.tuples(
    st.integers(0, len(DOCUMENTS) - 1), st.lists(mutation(), min_size=1, max_size=3)
)
#: Three in four cases mutate a signed envelope; the rest are random input.
inputs: st.SearchStrategy[Case] = st.one_of(
    _mutated,
    _mutated,
    _mutated,
    st.tuples(st.just(-1), st.one_of(st.binary(max_size=4000), xmlish).map(_raw)),
)


def _apply(signed: Signed, case: Case) -> bytes:
    which, changes = case
    data = signed.originals[max(which, 0)][0]
    for change in changes:
        data = change.apply(data)
    return data


class TestFuzzOpen:
    """EnvelopeVerifier.open on mutated and random input."""

    @pytest.mark.timeout(max(120, EXAMPLES // 20))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=DEADLINE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=inputs)
    def test_open_refuses_cleanly_or_returns_the_original(self, signed: Signed, case: Case) -> None:
        """Every input opens to the signed envelope or is refused with a documented code."""
        which, changes = case
        names = [change.name for change in changes]
        refusal: B2BSimError | None = None
        try:
            opened = signed.verifier.open(_apply(signed, case))
        except B2BSimError as exc:  # anything else fails the test, as it should
            refusal = exc
        if refusal is not None:
            assert refusal.code in PROBLEMS, f"undocumented code {refusal.code}: {refusal}"
            assert code_for(refusal) == refusal.code
            return
        assert which >= 0, f"random input opened as a signed envelope: {names}"
        assert opened == signed.originals[which][1], (
            f"a changed envelope opened as another: {names}"
        )

    def test_unchanged_envelopes_open(self, signed: Signed) -> None:
        """The originals open to themselves (the fuzz test's baseline is sound)."""
        for data, envelope in signed.originals:
            assert signed.verifier.open(data) == envelope
            assert dataclasses.replace(envelope) == envelope
