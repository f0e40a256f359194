"""The pull API's acknowledgement with a "refused" list, its request log and its faults.

No broker here: the outbox is filled directly and the dead-letter queue is a
callback that records (tests/icc_bridge/test_pull_refusals.py runs the real one).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from icc_bridge.outbox import Outbox, OutboxRow
from icc_bridge.pull_ack import Ack, Refusal, parse_ack
from icc_bridge.pull_api import PullApi, PullApiConfig
from icc_bridge.pull_faults import PullFaultPlan, PullFaults
from simulator.lab.pki import cert_sha256, init_pki, numbered_suppliers
from simulator.lab.ports import free_ports
from simulator.vocabulary.registry import DeliveryMode, Registry, SupplierEntry
from simulator.vocabulary.state import StateDir
from simulator.vocabulary.tls import client_context

(SUPPLIER,) = numbered_suppliers(1)
ORG = SUPPLIER.org_number


REPO = Path(__file__).resolve().parents[2]


def test_the_documented_ack_schema_takes_a_refused_list() -> None:
    """docs/openapi.yaml's Ack is what parse_ack takes (and refuses what it refuses)."""
    spec = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
    schemas = spec["components"]["schemas"]
    text = yaml.safe_dump({**schemas["Ack"], "$defs": schemas})
    validator = jsonschema.Draft202012Validator(
        yaml.safe_load(text.replace("#/components/schemas/", "#/$defs/"))
    )
    good = {"up_to": 5, "refused": [refusal(2)]}
    validator.validate(good)
    assert isinstance(parse_ack(good), Ack)
    bad = {"up_to": 5, "refused": [{**refusal(2), "code": "not a code"}]}
    assert not validator.is_valid(bad)
    assert isinstance(parse_ack(bad), str)


class TestParseAck:
    def test_up_to_alone(self) -> None:
        assert parse_ack({"up_to": 3}) == Ack(3)

    def test_with_refusals(self) -> None:
        doc = {
            "up_to": 5,
            "refused": [
                {"cursor": 2, "envelope_id": "e2", "code": "SIGNATURE_INVALID", "reason": "bad"}
            ],
        }
        assert parse_ack(doc) == Ack(5, (Refusal(2, "e2", "SIGNATURE_INVALID", "bad"),))

    @pytest.mark.parametrize(
        ("doc", "says"),
        [
            ({"up_to": 3, "other": 1}, "send {"),
            ({"up_to": -1}, "is not a cursor"),
            ({"up_to": 3, "refused": {}}, "must be a list"),
            (
                {
                    "up_to": 3,
                    "refused": [{"cursor": 4, "envelope_id": "e", "code": "X", "reason": ""}],
                },
                "refused[0].cursor 4 is above up_to 3",
            ),
            (
                {
                    "up_to": 3,
                    "refused": [{"cursor": 2, "envelope_id": "e", "code": "X", "reason": ""}] * 2,
                },
                "refused[1].cursor 2 is listed twice",
            ),
            (
                {
                    "up_to": 3,
                    "refused": [
                        {"cursor": 2, "envelope_id": "e", "code": "bad code", "reason": ""}
                    ],
                },
                "is not a code",
            ),
            ({"up_to": 3, "refused": [{"cursor": 2, "envelope_id": "e"}]}, 'exactly "cursor"'),
            (
                {
                    "up_to": 3,
                    "refused": [{"cursor": 2, "envelope_id": "", "code": "X", "reason": ""}],
                },
                "envelope_id",
            ),
        ],
    )
    def test_a_bad_body_says_which_part(self, doc: Any, says: str) -> None:
        detail = parse_ack(doc)
        assert isinstance(detail, str)
        assert says in detail


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> StateDir:
    state = StateDir(tmp_path_factory.mktemp("pullack") / "state").ensure()
    init_pki(state, [SUPPLIER])
    return state


class Api:
    """A pull API on an outbox of its own, with a recording dead-letter queue."""

    def __init__(self, state: StateDir, tmp: Path, faults: dict[str, Any] | None = None) -> None:
        self.state, self.tmp = state, tmp
        (port,) = free_ports(1)
        self.url = f"https://127.0.0.1:{port}/b2b/outbox"
        registry = tmp / "registry.json"
        Registry(
            [
                SupplierEntry(
                    org_number=ORG,
                    name=SUPPLIER.name,
                    url=self.url,
                    cert_sha256=cert_sha256(state.supplier_cert(ORG)),
                    delivery_mode=DeliveryMode.PULL,
                )
            ]
        ).save(registry)
        faults_file = None
        if faults is not None:
            faults_file = tmp / "pull-faults.json"
            faults_file.write_text(json.dumps(faults))
        self.dead: list[tuple[OutboxRow, Refusal]] = []
        self.dlq_down = False
        self.outbox = tmp / "outbox.sqlite"
        self.events, self.requests = tmp / "icc.jsonl", tmp / "pull.jsonl"
        self.api = PullApi(
            PullApiConfig(
                outbox=self.outbox,
                registry=registry,
                ca_cert=state.ca_cert,
                icc_cert=state.icc_cert,
                icc_key=state.icc_key,
                port=port,
                events_log=self.events,
                requests_log=self.requests,
                faults=faults_file,
                dead_letter=self._dead_letter,
            )
        )

    async def _dead_letter(self, row: OutboxRow, refusal: Refusal) -> None:
        if self.dlq_down:
            raise ConnectionError("the broker is away")
        self.dead.append((row, refusal))

    async def fill(self, n: int) -> None:
        outbox = Outbox(self.outbox)
        await outbox.open()
        for i in range(1, n + 1):
            await outbox.put(
                envelope_id=f"e{i}",
                org_number=ORG,
                message_id=f"m{i}",
                message_type="INKOPSORDER",
                sequence=i,
                envelope=b"<signed/>",
            )
        await outbox.close()

    def http(self) -> aiohttp.ClientSession:
        ctx = client_context(
            self.state.supplier_cert(ORG), self.state.supplier_key(ORG), self.state.ca_cert
        )
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, force_close=True))

    async def get(self, after: int = 0) -> tuple[int, Any, str | None]:
        async with self.http() as http, http.get(f"{self.url}?after={after}") as resp:
            return resp.status, await resp.json(content_type=None), resp.headers.get("Retry-After")

    async def ack(self, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http() as http, http.post(self.url + "/ack", json=body) as resp:
            text = await resp.read()
            return resp.status, json.loads(text) if text else None

    def lines(self, path: Path) -> list[dict[str, Any]]:
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def api(pki: StateDir, tmp_path: Path) -> AsyncIterator[Api]:
    a = Api(pki, tmp_path)
    await a.fill(3)
    await a.api.start()
    try:
        yield a
    finally:
        await a.api.stop()


def refusal(cursor: int, envelope_id: str | None = None) -> dict[str, Any]:
    return {
        "cursor": cursor,
        "envelope_id": envelope_id or f"e{cursor}",
        "code": "SIGNATURE_INVALID",
        "reason": "the signature does not verify",
    }


class TestRefusedList:
    async def test_refused_envelopes_are_dead_lettered_and_never_served_again(
        self, api: Api
    ) -> None:
        _, page, _ = await api.get()
        assert [e["cursor"] for e in page["envelopes"]] == [1, 2, 3]
        assert await api.ack({"up_to": 3, "refused": [refusal(2)]}) == (204, None)
        assert [(row.message_id, r.code, r.reason) for row, r in api.dead] == [
            ("m2", "SIGNATURE_INVALID", "the signature does not verify")
        ]
        assert (await api.get())[1]["envelopes"] == []
        # delivered for what was stored, not for the refused one (the DLQ logs that)
        assert [e["message_id"] for e in api.lines(api.events)] == ["m1", "m3"]
        acks = [r for r in api.lines(api.requests) if r["event"] == "ack"]
        assert acks[-1] | {"at_ms": 0} == {
            "event": "ack",
            "at_ms": 0,
            "org_number": ORG,
            "up_to": 3,
            "refused": [2],
            "status": 204,
            "acked": 3,
        }

    async def test_acknowledging_the_same_refusal_again_dead_letters_it_once(
        self, api: Api
    ) -> None:
        await api.get()
        body = {"up_to": 3, "refused": [refusal(1)]}
        assert (await api.ack(body))[0] == 204
        assert (await api.ack(body))[0] == 204  # its answer was lost: sent again
        assert len(api.dead) == 1

    async def test_a_cursor_above_up_to_is_refused_and_nothing_acknowledged(self, api: Api) -> None:
        await api.get()
        status, problem = await api.ack({"up_to": 1, "refused": [refusal(2)]})
        assert (status, problem["code"]) == (400, "ACK_INVALID")
        assert "refused[0].cursor 2 is above up_to 1" in problem["detail"]
        assert api.dead == []
        assert len((await api.get())[1]["envelopes"]) == 3

    async def test_a_cursor_never_served_is_refused(self, api: Api) -> None:
        status, problem = await api.ack({"up_to": 3, "refused": [refusal(2)]})  # no GET first
        assert (status, problem["code"]) == (400, "ACK_INVALID")
        assert "refused[0].cursor 2 was never served to you" in problem["detail"]
        assert api.dead == []

    async def test_another_envelope_id_at_the_cursor_is_refused(self, api: Api) -> None:
        await api.get()
        status, problem = await api.ack({"up_to": 3, "refused": [refusal(2, "e3")]})
        assert status == 400
        assert "'e3' is not the envelope at cursor 2 (e2)" in problem["detail"]

    async def test_an_unreachable_dlq_acknowledges_nothing(self, api: Api) -> None:
        await api.get()
        api.dlq_down = True
        status, problem = await api.ack({"up_to": 3, "refused": [refusal(2)]})
        assert (status, problem["code"]) == (503, "OUTBOX_UNAVAILABLE")
        assert len((await api.get())[1]["envelopes"]) == 3
        api.dlq_down = False
        assert (await api.ack({"up_to": 3, "refused": [refusal(2)]}))[0] == 204
        assert len(api.dead) == 1


class TestFaults:
    async def test_a_lost_ack_gets_no_answer_and_acknowledges_nothing(
        self, pki: StateDir, tmp_path: Path
    ) -> None:
        a = Api(pki, tmp_path, {"org_numbers": [ORG], "drop_acks": 1})
        await a.fill(2)
        await a.api.start()
        try:
            await a.get()
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await a.ack({"up_to": 2})
            assert len((await a.get())[1]["envelopes"]) == 2  # still there
            assert (await a.ack({"up_to": 2}))[0] == 204  # only one is lost
            dropped = [r for r in a.lines(a.requests) if r.get("dropped")]
            assert [(r["up_to"], r["pending"], r["status"]) for r in dropped] == [(2, [1, 2], None)]
        finally:
            await a.api.stop()

    async def test_after_the_lost_ack_a_busy_window_answers_503_retry_after(
        self, pki: StateDir, tmp_path: Path
    ) -> None:
        plan = {"org_numbers": [ORG], "drop_acks": 1, "busy_seconds": 0.6, "retry_after": 2}
        a = Api(pki, tmp_path, plan)
        await a.fill(1)
        await a.api.start()
        try:
            await a.get()
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await a.ack({"up_to": 1})
            status, problem, retry_after = await a.get()
            assert (status, problem["code"], retry_after) == (503, "OUTBOX_UNAVAILABLE", "2")
            await asyncio.sleep(0.7)
            assert (await a.get())[0] == 200
            busy = [r for r in a.lines(a.requests) if r["status"] == 503]
            assert [(r["event"], r["retry_after"]) for r in busy] == [("page", 2)]
        finally:
            await a.api.stop()

    async def test_no_faults_for_a_supplier_not_named(self, pki: StateDir, tmp_path: Path) -> None:
        a = Api(pki, tmp_path, {"org_numbers": ["5560000001"], "drop_acks": 1, "busy_seconds": 5})
        await a.fill(1)
        await a.api.start()
        try:
            await a.get()
            assert (await a.ack({"up_to": 1}))[0] == 204
            assert (await a.get())[0] == 200
        finally:
            await a.api.stop()


def test_each_named_supplier_loses_its_own_first_acks() -> None:
    """With several pullers (``--target``), each one's first ``drop_acks`` are lost, not
    only the first puller's; a supplier not named loses none."""
    other = "5560000001"
    faults = PullFaults(PullFaultPlan(org_numbers=frozenset({ORG, other}), drop_acks=1))
    assert faults.drop_ack(ORG, [1, 2]) is True
    assert faults.drop_ack(ORG, [1, 2]) is False  # only its first
    assert faults.drop_ack(other, [3]) is True  # the other's first is lost too
    assert faults.drop_ack(other, [3]) is False
    assert faults.drop_ack("5520000018", [4]) is False  # not named
    assert faults.drop_ack(ORG, []) is False  # acknowledging nothing is never lost
