"""Tests of simulator.vocabulary.sqlite_worker: one connection on one thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from simulator.vocabulary.sqlite_worker import SqliteWorker

SCHEMA = "CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL);"


def _insert(db: sqlite3.Connection, n: int) -> int:
    return db.execute("INSERT INTO t (n) VALUES (?)", (n,)).rowcount


def _all(db: sqlite3.Connection) -> list[int]:
    return [n for (n,) in db.execute("SELECT n FROM t ORDER BY rowid")]


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[SqliteWorker]:
    """An open worker on a file in a directory open() creates."""
    w = SqliteWorker(tmp_path / "sub" / "w.sqlite", schema=SCHEMA, owner="T", thread_name="t")
    await w.open()
    yield w
    await w.close()


class TestOpen:
    """What open() sets up."""

    async def test_creates_directory_schema_and_wal(self, worker: SqliteWorker) -> None:
        """The directory, the schema's table and WAL mode exist after open()."""
        assert worker.path.exists()
        assert await worker.call(_all) == []
        mode = await worker.call(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"

    async def test_synchronous_level(self, tmp_path: Path) -> None:
        """synchronous="FULL" is set on the connection (2 is FULL)."""
        w = SqliteWorker(
            tmp_path / "f.sqlite", schema=SCHEMA, owner="T", thread_name="t", synchronous="FULL"
        )
        await w.open()
        try:
            level = await w.call(lambda db: db.execute("PRAGMA synchronous").fetchone()[0])
        finally:
            await w.close()
        assert level == 2

    async def test_bad_schema_raises(self, tmp_path: Path) -> None:
        """A schema SQLite cannot run is an sqlite3.Error from open()."""
        w = SqliteWorker(tmp_path / "b.sqlite", schema="CREATE TABLE", owner="T", thread_name="t")
        try:
            with pytest.raises(sqlite3.Error):
                await w.open()
        finally:
            await w.close()

    async def test_call_before_open_names_the_owner(self, tmp_path: Path) -> None:
        """A call before open() raises RuntimeError naming the owner's open()."""
        w = SqliteWorker(tmp_path / "n.sqlite", schema=SCHEMA, owner="Inbox", thread_name="t")
        try:
            with pytest.raises(RuntimeError, match=r"Inbox\.open\(\) was not awaited"):
                await w.call(_all)
        finally:
            await w.close()


class TestCall:
    """Running functions on the worker's thread."""

    async def test_arguments_and_result(self, worker: SqliteWorker) -> None:
        """call(fn, *args, **kwargs) passes the connection first and returns fn's result."""
        assert await worker.call(_insert, 7) == 1
        assert await worker.call(_insert, n=8) == 1
        assert await worker.call(_all) == [7, 8]

    async def test_runs_on_one_other_thread(self, worker: SqliteWorker) -> None:
        """Every call runs on the same thread, not the event loop's."""
        names = [await worker.call(lambda db: threading.current_thread().name) for _ in range(3)]
        assert len(set(names)) == 1
        assert names[0] != threading.current_thread().name
        assert names[0].startswith("t")

    async def test_calls_run_in_the_order_made(self, worker: SqliteWorker) -> None:
        """Futures made one after another run in that order, even if awaited backwards."""
        futures = [worker.call(_insert, n) for n in range(20)]
        for future in reversed(futures):
            await future
        assert await worker.call(_all) == list(range(20))

    async def test_queued_without_awaiting(self, worker: SqliteWorker) -> None:
        """A call runs even if its future is awaited only later."""
        future = worker.call(_insert, 1)
        await asyncio.sleep(0.05)
        assert future.done()
        assert await worker.call(_all) == [1]

    async def test_errors_propagate(self, worker: SqliteWorker) -> None:
        """An exception in fn is raised by the await; the worker keeps working."""
        with pytest.raises(sqlite3.OperationalError):
            await worker.call(lambda db: db.execute("SELECT * FROM missing"))
        assert await worker.call(_insert, 3) == 1

    async def test_transaction_rolls_back(self, worker: SqliteWorker) -> None:
        """A function's own BEGIN IMMEDIATE ... raise leaves nothing written."""

        def half(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                _insert(db, 1)
                raise ValueError("stop")

        with pytest.raises(ValueError, match="stop"):
            await worker.call(half)
        assert await worker.call(_all) == []


class TestClose:
    """Closing the worker."""

    async def test_close_commits_and_closes(self, tmp_path: Path) -> None:
        """After close(), another connection sees what was written; calls raise again."""
        path = tmp_path / "c.sqlite"
        w = SqliteWorker(path, schema=SCHEMA, owner="T", thread_name="t")
        await w.open()
        await w.call(_insert, 5)
        await w.close()
        with closing(sqlite3.connect(path)) as db:
            assert _all(db) == [5]
        with pytest.raises(RuntimeError):
            w.call(_all)  # the thread has ended: nothing can be queued

    async def test_close_without_open(self, tmp_path: Path) -> None:
        """close() of a worker never opened does nothing and raises nothing."""
        w = SqliteWorker(tmp_path / "x.sqlite", schema=SCHEMA, owner="T", thread_name="t")
        await w.close()
        assert not (tmp_path / "x.sqlite").exists()
