"""The checks over every envelope the ICC harness received, on envelopes made here."""

from __future__ import annotations

import dataclasses

import pytest

from ka_producer.documents import DocumentFactory, seller_profile
from simulator.kits.conformance_certs import make_material
from simulator.kits.icc_harness import Mode, Seen
from simulator.kits.icc_harness_grading import (
    Published,
    gaps,
    grade_fields,
    grade_signatures,
    same_envelope_id,
)
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.vocabulary.envelope import Envelope
from simulator.vocabulary.messages import MessageMeta
from simulator.vocabulary.signing import EnvelopeSigner
from simulator.vocabulary.state import StateDir

SUPPLIER = numbered_suppliers(1)[0]
URL = "https://127.0.0.1:9443/b2b/envelopes"
#: Another order for the same supplier (the ICC must carry KA's, not any).
OTHER_ORDER = DocumentFactory(99).order(seller_profile(SUPPLIER.org_number, SUPPLIER.name)).xml


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("icc-grading") / "state").ensure()
    init_pki(state, [SUPPLIER])
    return state


def _seen(body: bytes, env: Envelope, at: float = 0.0) -> Seen:
    return Seen(
        at=at, path="/b2b/envelopes", size=len(body), body=body, mode=Mode.GOOD,
        tls_version="TLSv1.3", client_is_icc=True, message_id=env.message_id,
        envelope_id=env.envelope_id,
    )  # fmt: skip


def _published(state: StateDir) -> tuple[Published, Envelope]:
    doc = DocumentFactory(3).order(seller_profile(SUPPLIER.org_number, SUPPLIER.name))
    meta = MessageMeta.new(doc.message_type, SUPPLIER.org_number, 1)
    pin = cert_sha256(state.supplier_cert(SUPPLIER.org_number))
    env = Envelope.create(meta, doc.xml, receiver_cert_sha256=pin, receiver_url=URL)
    return Published(meta, doc.xml), env


def _signed(state: StateDir, env: Envelope) -> bytes:
    return EnvelopeSigner(state.icc_key.read_bytes(), state.icc_cert.read_bytes()).sign(env)


def test_the_icc_s_envelope_passes_both(state: StateDir) -> None:
    pub, env = _published(state)
    seen = [_seen(_signed(state, env), env)]
    ca = state.ca_cert.read_bytes()
    pin = env.receiver_cert_sha256
    assert grade_signatures(seen, ca).passed
    fields = grade_fields(seen, {pub.meta.message_id: pub}, ca_pem=ca, url=URL, cert_sha256=pin)
    assert fields.passed, fields.reason


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"sequence": 9}, "SEQUENCE is 9, not 1"),
        ({"receiver_url": "https://127.0.0.1:1/b2b/envelopes"}, "RECEIVER_URL"),
        ({"receiver_cert_sha256": "0" * 64}, "RECEIVER_CERT_SHA256"),
        ({"correlation_id": "another"}, "CORRELATION_ID"),
        ({"document": OTHER_ORDER}, "the document is not the one KA published"),
    ],
)
def test_a_wrong_af_field_fails_the_fields_check(
    state: StateDir, change: dict[str, object], said: str
) -> None:
    pub, env = _published(state)
    wrong = dataclasses.replace(env, **change)  # type: ignore[arg-type]
    seen = [_seen(_signed(state, wrong), wrong)]
    verdict = grade_fields(
        seen,
        {pub.meta.message_id: pub},
        ca_pem=state.ca_cert.read_bytes(),
        url=URL,
        cert_sha256=env.receiver_cert_sha256,
    )
    assert not verdict.passed
    assert verdict.graded
    assert said in verdict.reason


def test_a_signer_that_is_not_the_icc_fails_the_signature_check(
    state: StateDir, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, env = _published(state)
    rogue = make_material(state, tmp_path_factory.mktemp("rogue")).rogue_signer
    body = EnvelopeSigner(rogue.key.read_bytes(), rogue.cert.read_bytes()).sign(env)
    verdict = grade_signatures([_seen(body, env)], state.ca_cert.read_bytes())
    assert not verdict.passed
    assert "1 of 1 envelope(s) refused" in verdict.reason


def test_a_tampered_envelope_fails_the_signature_check(state: StateDir) -> None:
    _, env = _published(state)
    body = _signed(state, env).replace(b"<sbd:HeaderVersion>1.0", b"<sbd:HeaderVersion>1.1")
    assert b"1.1" in body
    assert not grade_signatures([_seen(body, env)], state.ca_cert.read_bytes()).passed


def test_nothing_received_is_not_graded(state: StateDir) -> None:
    verdict = grade_signatures([], state.ca_cert.read_bytes())
    assert not verdict.graded


def test_retry_helpers(state: StateDir) -> None:
    _, env = _published(state)
    first, second = _seen(b"x", env, at=1.0), _seen(b"x", env, at=1.5)
    first.answered_at = 1.2
    assert gaps([first, second]) == pytest.approx([0.3])
    assert same_envelope_id([first, second]) is None
    other = dataclasses.replace(second, envelope_id="another")
    assert "different envelope ids" in (same_envelope_id([first, other]) or "")
