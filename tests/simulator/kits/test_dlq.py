"""The dead-letter queue commands: list, show and replay, against the real broker."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from simulator import cli
from simulator.commands.dlq import pretty_body
from simulator.kits.dlq import (
    BROKER_DLQ_CODE,
    BROWSE_PAGE_SIZE,
    DLQ_AT,
    DLQ_CODE,
    DLQ_REASON,
    REPLAYED_AT,
    DeadLetter,
    DeadLetterQueue,
    dead_letter_queue,
)
from simulator.lab.broker import parse_broker_url
from simulator.vocabulary.errors import ConfigError, DeadLetterNotFoundError
from simulator.vocabulary.messages import Header, MessageMeta, MessageType
from simulator.vocabulary.stomp_io import Frame, StompConnection

ORG = "5560360793"


def meta(sequence: int) -> MessageMeta:
    """KA's metadata for a self-billing invoice of ORG."""
    return MessageMeta.new(MessageType.SJALVFAKTURA, ORG, sequence)


def body(sequence: int) -> str:
    """A small XML document, unindented, naming its sequence."""
    return f"<Invoice><ID>INV-{sequence}</ID><Note>n{sequence}</Note></Invoice>"


def dead_letter_headers(m: MessageMeta, code: str = "DELIVERY_REFUSED") -> dict[str, str]:
    """The headers the ICC gives a message it dead-letters."""
    return {
        **m.headers(),
        DLQ_CODE: code,
        DLQ_REASON: "HTTP 422: the document is invalid",
        DLQ_AT: "1700000000000",
    }


async def seed(url: str, queue: str, count: int) -> list[MessageMeta]:
    """Dead-letter ``count`` messages of ``queue`` as the ICC does; their metadata."""
    conn = StompConnection(*parse_broker_url(url))
    await conn.connect()
    metas = [meta(i) for i in range(1, count + 1)]
    try:
        for i, m in enumerate(metas, start=1):
            await conn.send(
                dead_letter_queue(queue),
                body(m.sequence),
                dead_letter_headers(m),
                receipt=i == count,
            )
    finally:
        await conn.disconnect()
    return metas


async def receive(url: str, queue: str, count: int, quiet: float = 1.0) -> list[Frame]:
    """Consume exactly ``count`` messages of ``queue`` and check nothing else follows."""
    conn = StompConnection(*parse_broker_url(url))
    await conn.connect()
    try:
        await conn.subscribe(queue)
        frames = [await asyncio.wait_for(conn.frames.get(), 10) for _ in range(count)]
        for frame in frames:
            await conn.ack(frame)
        try:
            extra = await asyncio.wait_for(conn.frames.get(), quiet)
        except TimeoutError:
            pass
        else:
            pytest.fail(f"unexpected message on {queue}: {dict(extra.headers)}")
        await conn.flush()
    finally:
        await conn.disconnect()
    return frames


async def letters(url: str, queue: str) -> list[DeadLetter]:
    """What the DLQ of ``queue`` holds now (browsed)."""
    async with DeadLetterQueue(url, queue) as dlq:
        return await dlq.letters()


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own."""
    return f"/queue/test.dlq.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def b2bsim() -> None:
    """`cli.main` has the dlq command registered."""
    assert "dlq" in cli.COMMANDS


class TestDeadLetter:
    """Reading a DLQ frame and building the replayed copy's headers."""

    def test_dead_letter_queue_naming(self) -> None:
        """The DLQ of /queue/x is /queue/DLQ.x, as ActiveMQ names its own."""
        assert dead_letter_queue("/queue/a.b") == "/queue/DLQ.a.b"

    def test_reads_the_icc_headers(self) -> None:
        """KA's metadata and the ICC's code, reason and time are read from the headers."""
        m = meta(7)
        frame = Frame({**dead_letter_headers(m), "message-id": "ID:x:1"}, body(7))
        d = DeadLetter.from_frame(frame)
        assert (d.message_id, d.message_type, d.org_number, d.sequence) == (
            m.message_id,
            "SJALVFAKTURA",
            ORG,
            7,
        )
        assert (d.code, d.dead_lettered_at_ms, d.broker_id) == (
            "DELIVERY_REFUSED",
            1700000000000,
            "ID:x:1",
        )
        assert d.reason == "HTTP 422: the document is invalid"
        assert d.body_bytes == len(body(7))

    def test_broker_made_dead_letter_has_a_code_and_the_broker_id(self) -> None:
        """A letter ActiveMQ dead-lettered itself (no b2b headers) is named by its broker id."""
        d = DeadLetter.from_frame(Frame({"message-id": "ID:y:2"}, "garbage"))
        assert d.code == BROKER_DLQ_CODE
        assert "redelivery" in d.reason
        assert d.key == "ID:y:2"
        assert d.sequence is None

    def test_replay_headers_drop_the_dlq_headers(self) -> None:
        """The copy keeps KA's headers, loses b2b-dlq-*, restores the group, adds the time."""
        m = meta(3)
        frame = Frame(
            {**dead_letter_headers(m), "message-id": "ID:z", "timestamp": "5", "priority": "4"},
            body(3),
        )
        headers = DeadLetter.from_frame(frame).replay_headers(1234)
        expected = {**m.headers(), REPLAYED_AT: "1234"}
        assert headers == expected

    def test_queue_names_are_checked(self) -> None:
        """A name that is not a queue, or is already a DLQ, is a ConfigError."""
        with pytest.raises(ConfigError, match="not a queue"):
            DeadLetterQueue("stomp://127.0.0.1:61613", "af.ka.outbound")
        with pytest.raises(ConfigError, match="itself a dead-letter queue"):
            DeadLetterQueue("stomp://127.0.0.1:61613", "/queue/DLQ.af.ka.outbound")

    def test_pretty_body_indents_xml_only(self) -> None:
        """XML bodies are indented; anything else is shown as it is."""
        assert pretty_body(body(1)) == (
            "<Invoice>\n  <ID>INV-1</ID>\n  <Note>n1</Note>\n</Invoice>"
        )
        assert pretty_body("not <xml") == "not <xml"


@pytest.mark.broker
class TestList:
    """Listing browses: it shows every dead letter and consumes none."""

    async def test_list_shows_and_keeps(self, broker_url: str, queue: str) -> None:
        """Listing twice shows the same three letters, in order."""
        metas = await seed(broker_url, queue, 3)
        first = await letters(broker_url, queue)
        second = await letters(broker_url, queue)
        assert [d.message_id for d in first] == [m.message_id for m in metas]
        assert [d.message_id for d in second] == [m.message_id for m in metas]

    async def test_empty_queue(self, broker_url: str, queue: str) -> None:
        """A DLQ that was never used lists as empty."""
        assert await letters(broker_url, queue) == []

    async def test_more_than_one_browse_page(self, broker_url: str, queue: str) -> None:
        """More dead letters than one browse shows (400) are all listed, once each."""
        count = BROWSE_PAGE_SIZE + 150
        metas = await seed(broker_url, queue, count)
        listed = await letters(broker_url, queue)
        assert sorted(d.message_id for d in listed) == sorted(m.message_id for m in metas)

    def test_cli_json(
        self, broker_url: str, queue: str, b2bsim: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`b2bsim dlq list --json` prints each letter's summary."""
        metas = asyncio.run(seed(broker_url, queue, 2))
        code = cli.main(["dlq", "list", "--broker", broker_url, "--queue", queue, "--json"])
        rows = json.loads(capsys.readouterr().out)
        assert code == 0
        assert [r["message_id"] for r in rows] == [m.message_id for m in metas]
        assert {r["code"] for r in rows} == {"DELIVERY_REFUSED"}


@pytest.mark.broker
class TestShow:
    """Showing one dead letter by id."""

    def test_cli_shows_headers_and_pretty_body(
        self, broker_url: str, queue: str, b2bsim: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`b2bsim dlq show ID` prints the code, the headers and the indented body."""
        [m] = asyncio.run(seed(broker_url, queue, 1))
        code = cli.main(["dlq", "show", m.message_id, "--broker", broker_url, "--queue", queue])
        out = capsys.readouterr().out
        assert code == 0
        assert "DELIVERY_REFUSED" in out
        assert f"{Header.MESSAGE_ID}" in out
        assert "\n  <ID>INV-1</ID>\n" in out

    async def test_unknown_id(self, broker_url: str, queue: str) -> None:
        """An id that is not in the DLQ raises DeadLetterNotFoundError."""
        await seed(broker_url, queue, 1)
        async with DeadLetterQueue(broker_url, queue) as dlq:
            with pytest.raises(DeadLetterNotFoundError, match="no dead letter with id 'nope'"):
                await dlq.get("nope")

    def test_cli_unknown_id_exits_1(
        self, broker_url: str, queue: str, b2bsim: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`b2bsim dlq show` of an unknown id exits 1 with one line naming the id."""
        code = cli.main(["dlq", "show", "nope", "--broker", broker_url, "--queue", queue])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1
        assert len(err) == 1
        assert err[0].startswith("error [DLQ_NOT_FOUND]: no dead letter with id 'nope'")


@pytest.mark.broker
class TestReplay:
    """Replaying puts dead letters back on KA's queue as KA sent them."""

    async def test_replay_one(self, broker_url: str, queue: str) -> None:
        """Exactly the named letter goes back, with KA's headers and body, without dlq headers."""
        metas = await seed(broker_url, queue, 3)
        target = metas[1]
        async with DeadLetterQueue(broker_url, queue) as dlq:
            moved = await dlq.replay(target.message_id)
        assert [d.message_id for d in moved] == [target.message_id]
        [frame] = await receive(broker_url, queue, 1)
        assert frame.body == body(target.sequence)
        for name, value in target.headers().items():
            if name != Header.GROUP:  # ActiveMQ does not echo JMSXGroupID over STOMP
                assert frame.headers[name] == value
        assert not [h for h in frame.headers if h.startswith("b2b-dlq-")]
        assert int(frame.headers[REPLAYED_AT]) > 0
        left = await letters(broker_url, queue)
        assert [d.message_id for d in left] == [metas[0].message_id, metas[2].message_id]

    async def test_replay_twice_is_not_found(self, broker_url: str, queue: str) -> None:
        """The second replay of the same id finds nothing: it cannot be re-sent twice."""
        [m] = await seed(broker_url, queue, 1)
        async with DeadLetterQueue(broker_url, queue) as dlq:
            await dlq.replay(m.message_id)
            with pytest.raises(DeadLetterNotFoundError):
                await dlq.replay(m.message_id)
        await receive(broker_url, queue, 1)

    async def test_replay_all_empties_the_dlq(self, broker_url: str, queue: str) -> None:
        """Every letter goes back, in order, and the DLQ is empty afterwards."""
        metas = await seed(broker_url, queue, 5)
        async with DeadLetterQueue(broker_url, queue) as dlq:
            moved = await dlq.replay_all()
        assert [d.message_id for d in moved] == [m.message_id for m in metas]
        frames = await receive(broker_url, queue, 5)
        assert [f.headers[Header.MESSAGE_ID] for f in frames] == [m.message_id for m in metas]
        assert await letters(broker_url, queue) == []

    def test_cli_replay_then_again(
        self, broker_url: str, queue: str, b2bsim: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`b2bsim dlq replay ID` exits 0, and 1 with a one-line error the second time."""
        [m] = asyncio.run(seed(broker_url, queue, 1))
        argv = ["dlq", "replay", m.message_id, "--broker", broker_url, "--queue", queue]
        assert cli.main(argv) == 0
        assert "1 dead letter(s) replayed" in capsys.readouterr().out
        assert cli.main(argv) == 1
        assert "DLQ_NOT_FOUND" in capsys.readouterr().err
        asyncio.run(receive(broker_url, queue, 1))

    def test_cli_replay_all(
        self, broker_url: str, queue: str, b2bsim: None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`b2bsim dlq replay --all` replays every letter and says how many."""
        asyncio.run(seed(broker_url, queue, 3))
        code = cli.main(["dlq", "replay", "--all", "--broker", broker_url, "--queue", queue])
        assert code == 0
        assert "3 dead letter(s) replayed" in capsys.readouterr().out
        asyncio.run(receive(broker_url, queue, 3))

    def test_cli_replay_needs_id_or_all(self, b2bsim: None) -> None:
        """`b2bsim dlq replay` without ID or --all is a usage error (exit 2)."""
        with pytest.raises(SystemExit) as exc:
            cli.main(["dlq", "replay"])
        assert exc.value.code == 2
