"""Tests for simulator.views.explain: every failure kind has a plain-English meaning and fix."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web

from icc_bridge.delivery import Attempt, Outcome, PushClient
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.runs.scenario import EXPECTABLE
from simulator.views.explain import (
    CODES,
    EXPECTATIONS,
    code_of_error,
    explain_code,
    explain_dead_letter,
    explain_error,
    explain_expectation,
)
from simulator.vocabulary.codes import CATALOGUE
from simulator.vocabulary.errors import B2BSimError
from simulator.vocabulary.problems import PROBLEMS
from simulator.vocabulary.registry import SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import server_context

#: The module that defines the error classes (tests/simulator/vocabulary/test_errors.py
#: checks that no other module defines one).
ERROR_MODULES = ("simulator.vocabulary.errors",)
DEAD_LETTER_CODES = ("DELIVERY_REFUSED", "DELIVERY_GAVE_UP", "BROKER_REDELIVERY_LIMIT")


def error_codes() -> set[str]:
    """The code of every B2BSimError subclass the simulator defines."""
    for name in ERROR_MODULES:
        importlib.import_module(name)
    found, todo = set(), [B2BSimError]
    while todo:
        cls = todo.pop()
        found.add(cls.code)
        todo += cls.__subclasses__()
    return found


class TestCoverage:
    def test_every_problem_code(self) -> None:
        """Every problem-details code a receiver may answer is explained."""
        assert set(PROBLEMS) - CODES == set()

    def test_every_error_code(self) -> None:
        """Every error class's stable code is explained."""
        assert error_codes() - CODES == set()

    def test_every_dead_letter_code(self) -> None:
        """The ICC's and the broker's dead-letter codes are explained."""
        assert set(DEAD_LETTER_CODES) <= CODES

    def test_every_expectable_figure(self) -> None:
        """Every figure a scenario may expect is explained."""
        assert set(EXPECTABLE) <= EXPECTATIONS

    @pytest.mark.parametrize("code", sorted(CODES))
    def test_explanations_are_sentences(self, code: str) -> None:
        """Title, meaning and fix are all there, and the fix is not the meaning again."""
        x = explain_code(code)
        assert x.key == code
        assert x.title
        assert x.meaning.endswith(".")
        assert x.fix.endswith(".")
        assert x.fix != x.meaning


class TestExplainExpectation:
    def test_figure(self) -> None:
        """A figure's explanation states expected and actual."""
        x = explain_expectation("out_of_order", 0, 4)
        assert x.title.endswith("(expected 0, got 4)")
        assert "PRODUCED_AT" in x.fix

    def test_counted_by_code(self) -> None:
        """`refused.CODE` explains the code as well as the count."""
        x = explain_expectation("refused.XML_DOCTYPE", 2, 1)
        assert "XML_DOCTYPE" in x.title
        assert "DOCTYPE" in x.meaning
        assert "attacks.jsonl" in x.fix

    def test_unknown_name(self) -> None:
        """An expectation this module does not know still gets an answer."""
        x = explain_expectation("wobbles", 1, 2)
        assert "wobbles" in x.title


class TestExplainError:
    @pytest.mark.parametrize(
        ("line", "code"),
        [
            ("error [RUN_TIMEOUT]: scenario 'x' did not finish within 5 s — hint", "RUN_TIMEOUT"),
            ("error [BROKER_UNREACHABLE]: nothing at stomp://h:1", "BROKER_UNREACHABLE"),
            ("something odd happened", ""),
        ],
    )
    def test_code_of_error(self, line: str, code: str) -> None:
        """The code is read from B2BSimError.one_line()'s form."""
        assert code_of_error(line) == code

    def test_explains_run_error(self) -> None:
        """A run error line is explained by its code."""
        assert explain_error("error [PKI]: no CA").title == explain_code("PKI").title

    def test_unknown_code_uses_problem_title_or_says_so(self) -> None:
        """A code without an entry still gets a title and a way forward."""
        x = explain_code("NO_SUCH_CODE")
        assert "NO_SUCH_CODE" in x.title
        assert x.fix


#: DLQ reasons the ICC wrote in real runs of the scenario library (b2bsim run … --result-json):
#: cert-expired, cert-revoked (the supplier's certificate, then the ICC's) and wrong-addressee.
PIN_A, PIN_B = "93c2947e966a985a" * 4, "9a9d74b2a2171992" * 4
SCENARIO_REASONS = [
    (
        "certificate refused: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "certificate has expired (_ssl.c:1006)",
        "cert-expired",
    ),
    (
        "certificate refused: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "certificate revoked (_ssl.c:1006)",
        "cert-revoked",
    ),
    ("ServerDisconnectedError: Server disconnected", "icc-cert-refused"),
    (
        f"certificate refused: server certificate SHA-256 {PIN_A} does not match the pinned "
        f"{PIN_B} — check the supplier's URL, or update cert_sha256 in the registry if the "
        "supplier's certificate was renewed",
        "cert-pin-mismatch",
    ),
]


class TestDeadLetterCauses:
    @pytest.mark.parametrize(("reason", "cause"), SCENARIO_REASONS)
    def test_gave_up_advice_follows_the_reason(self, reason: str, cause: str) -> None:
        """A certificate problem is not told to 'bring the supplier back' or raise icc.retry."""
        x = explain_dead_letter("DELIVERY_GAVE_UP", reason)
        assert x.cause == cause
        assert x.key == "DELIVERY_GAVE_UP"
        assert x.title.startswith("The ICC gave up delivering")
        assert "Bring the supplier back" not in x.fix
        assert x.fix.endswith(".")
        if cause.startswith("cert-"):
            assert "icc.retry does not help" in x.fix
            assert "cert_sha256" in x.fix

    def test_each_cause_has_its_own_advice(self) -> None:
        """No two causes of a code share a fix, and every text is a sentence."""
        for code in ("DELIVERY_GAVE_UP", "DELIVERY_REFUSED"):
            causes = CATALOGUE[code].causes
            assert len(causes) >= 4
            assert len({c.fix for c in causes}) == len(causes)
            assert len({c.key for c in causes}) == len(causes)
            for c in causes:
                assert c.meaning.endswith("."), c.key
                assert c.fix.endswith("."), c.key

    def test_unknown_reason_falls_back_to_the_code(self) -> None:
        """A reason no cause knows gets the code's own texts."""
        x = explain_dead_letter("DELIVERY_GAVE_UP", "something new")
        assert x.cause == ""
        assert (x.title, x.fix) == (
            CATALOGUE["DELIVERY_GAVE_UP"].title,
            CATALOGUE["DELIVERY_GAVE_UP"].fix,
        )

    def test_refusal_with_a_problem_code_uses_that_code(self) -> None:
        """`HTTP 421: WRONG_ADDRESSEE` is explained by WRONG_ADDRESSEE's entry."""
        x = explain_dead_letter("DELIVERY_REFUSED", "HTTP 421: WRONG_ADDRESSEE")
        assert x.cause == "WRONG_ADDRESSEE"
        assert "WRONG_ADDRESSEE" in x.title
        assert CATALOGUE["WRONG_ADDRESSEE"].fix in x.fix
        assert "dlq replay" in x.fix

    def test_a_pulled_refusal_is_explained_by_the_suppliers_code(self) -> None:
        """`SIGNATURE_INVALID: …` (a puller's refused list) is explained by that code's entry."""
        x = explain_dead_letter("PULL_REFUSED", "SIGNATURE_INVALID: does not verify")
        assert x.cause == "SIGNATURE_INVALID"
        assert CATALOGUE["SIGNATURE_INVALID"].fix in x.fix
        own = explain_dead_letter("PULL_REFUSED", "OUR_OWN_RULE: not for us")
        assert (own.title, own.cause) == (CATALOGUE["PULL_REFUSED"].title, "")

    def test_pull_without_outbox(self) -> None:
        """The reason bridge.py writes for a pull supplier without an outbox."""
        x = explain_dead_letter("DELIVERY_REFUSED", "the supplier pulls, but the ICC has no outbox")
        assert x.cause == "no-outbox"
        assert "--outbox" in x.fix

    def test_other_codes_are_unchanged(self) -> None:
        """A code without causes is explained as explain_code explains it."""
        assert explain_dead_letter("UNKNOWN_SUPPLIER", "x") == explain_code("UNKNOWN_SUPPLIER")


# --- reasons made by the real push client (icc_bridge.delivery) against a real TLS server ---
SUPPLIERS = numbered_suppliers(1)
TIMEOUT = 0.5


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(TIMEOUT * 6)
    return web.json_response({"status": "accepted"}, status=201)


def _status(status: int, body: dict[str, str]) -> object:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    return handler


ROUTES = {
    "/slow": _slow,
    "/busy": _status(503, {"title": "Service Unavailable"}),
    "/limit": _status(429, {"title": "Too Many Requests"}),
    "/gone": _status(404, {"title": "Not Found"}),
    "/wrong": _status(421, {"code": "WRONG_ADDRESSEE"}),
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("causes") / "state")
    init_pki(state, SUPPLIERS)
    return state


@pytest.fixture
async def push(pki: StateDir) -> AsyncIterator[tuple[PushClient, SupplierEntry]]:
    app = web.Application()
    for path, handler in ROUTES.items():
        app.router.add_post(path, handler)  # type: ignore[arg-type]
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    org = SUPPLIERS[0].org_number
    ctx = server_context(pki.supplier_cert(org), pki.supplier_key(org), pki.ca_cert)
    (port,) = free_ports(1)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    client = PushClient(
        ca_cert=pki.ca_cert, icc_cert=pki.icc_cert, icc_key=pki.icc_key, timeout=TIMEOUT
    )
    await client.start()
    entry = SupplierEntry(
        org_number=org,
        name=SUPPLIERS[0].name,
        url=f"https://127.0.0.1:{port}/slow",
        cert_sha256=cert_sha256(pki.supplier_cert(org)),
    )
    try:
        yield client, entry
    finally:
        await client.close()
        await runner.cleanup()


class TestCausesOfRealReasons:
    @pytest.mark.parametrize(
        ("path", "outcome", "cause"),
        [
            ("/slow", Outcome.RETRY, "timeout"),
            ("/busy", Outcome.RETRY, "server-error"),
            ("/limit", Outcome.RETRY, "rate-limited"),
            ("/gone", Outcome.REFUSED, "wrong-url"),
            ("/wrong", Outcome.REFUSED, "WRONG_ADDRESSEE"),
        ],
    )
    async def test_answer(
        self,
        push: tuple[PushClient, SupplierEntry],
        path: str,
        outcome: Outcome,
        cause: str,
    ) -> None:
        """The last attempt's reason, as the ICC dead-letters it, picks its cause."""
        client, entry = push
        attempt = await client.push(replace(entry, url=entry.url.replace("/slow", path)), b"<x/>")
        assert attempt.outcome is outcome
        code = "DELIVERY_REFUSED" if outcome is Outcome.REFUSED else "DELIVERY_GAVE_UP"
        assert explain_dead_letter(code, attempt.reason).cause == cause, attempt.reason

    async def test_nothing_listening(self, push: tuple[PushClient, SupplierEntry]) -> None:
        """A closed port: unreachable, and the advice is to bring the endpoint back."""
        client, entry = push
        (port,) = free_ports(1)
        attempt: Attempt = await client.push(
            replace(entry, url=f"https://127.0.0.1:{port}/b2b/envelopes"), b"<x/>"
        )
        x = explain_dead_letter("DELIVERY_GAVE_UP", attempt.reason)
        assert x.cause == "unreachable", attempt.reason
        assert "Bring the supplier's endpoint back" in x.fix
        assert "icc.retry" in x.fix

    async def test_pin_mismatch(
        self, pki: StateDir, push: tuple[PushClient, SupplierEntry]
    ) -> None:
        """Another pinned fingerprint than the server's: the pin cause, whatever the URL."""
        client, entry = push
        attempt = await client.push(replace(entry, cert_sha256="ab" * 32), b"<x/>")
        assert explain_dead_letter("DELIVERY_GAVE_UP", attempt.reason).cause == "cert-pin-mismatch"
