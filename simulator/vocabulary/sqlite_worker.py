"""One SQLite connection on one dedicated thread, for code on an event loop.

SQLite calls block, so a component that keeps a SQLite file (the ICC's
outbox, the supplier stub's inbox and ledger) runs every call on a thread of
its own that owns the one connection: the event loop only awaits them.
Calls run one at a time in the order they were made, so a function passed to
:meth:`SqliteWorker.call` may open a transaction and finish it without any
other call coming between.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

__all__ = ["SqliteWorker"]

T = TypeVar("T")
P = ParamSpec("P")


class SqliteWorker:
    """The connection to ``path`` and the thread that uses it.

    ``await open()`` creates the file's directory, connects in autocommit
    mode (transactions are the caller's: ``BEGIN IMMEDIATE`` inside ``with
    db:``), turns on WAL with the given ``synchronous`` level and runs
    ``schema``; then ``call(fn, ...)`` runs ``fn(connection, ...)`` on the
    thread; ``await close()`` closes the connection and ends the thread.
    ``owner`` names the component in errors (``Outbox.open() was not awaited``).
    """

    def __init__(
        self,
        path: Path,
        *,
        schema: str,
        owner: str,
        thread_name: str,
        synchronous: str = "NORMAL",
        timeout: float = 5.0,
    ) -> None:
        self.path = path
        self._schema = schema
        self._owner = owner
        self._synchronous = synchronous
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Connect and create the schema (errors of SQLite or the file system propagate)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, timeout=self._timeout)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            db.executescript(self._schema)
        except BaseException:
            db.close()
            raise
        self._db = db

    def call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> asyncio.Future[T]:
        """Run ``fn(connection, *args, **kwargs)`` on the thread; await the result.

        The call is queued at once, so calls run in the order they were made,
        whether or not (and whenever) their futures are awaited.  Before
        :meth:`open` has completed, the call raises RuntimeError.
        """
        job = functools.partial(self._with_db, fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._executor, job)

    def _with_db(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        if self._db is None:
            raise RuntimeError(f"{self._owner}.open() was not awaited")
        return fn(self._db, *args, **kwargs)

    async def close(self) -> None:
        """Close the connection (if open) and end the thread; calls queued before still run."""
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
