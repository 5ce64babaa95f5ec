"""Async engines tuned per backend."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util.concurrency import await_, in_greenlet

from shared.metrics import DB_COMMITS, DB_STATEMENTS


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": LOCK_TIMEOUT_SECONDS}, **kwargs)
        _tune_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


LOCK_TIMEOUT_SECONDS = 30


class _WriterQueue:
    """The writers of one SQLite database in this process, queued in the event loop.

    SQLite has one write lock per database, and a writer that finds it taken sleeps in SQLite's busy handler
    (1, 2, 5 … then 100 ms at a time) and tries again: under load the lock sits free while the waiters
    sleep. Queued here instead, the next writer starts the moment the last one ends. Other processes on the
    same file (a second worker, a command-line job) still meet at SQLite's lock and its busy timeout."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def acquire(self, info: dict[str, Any]) -> None:
        if info.get(_HOLDS) is not None or not in_greenlet():
            return  # this connection holds it already (a second transaction on one checkout), or sync use
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault(loop, asyncio.Lock())
        try:
            await_(_acquire(lock))
        except TimeoutError:
            raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")) from None
        info[_HOLDS] = (loop, lock)

    @staticmethod
    def release(info: dict[str, Any]) -> None:
        held = info.pop(_HOLDS, None)
        if held is None:
            return
        loop, lock = held
        if _running_loop() is loop:
            lock.release()
        else:  # a connection cleaned up outside its loop (garbage collection)
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits on its lock
                loop.call_soon_threadsafe(lock.release)


_HOLDS = "doudi_write_lock"


async def _acquire(lock: asyncio.Lock) -> None:
    async with asyncio.timeout(LOCK_TIMEOUT_SECONDS):
        await lock.acquire()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _tune_sqlite(engine: AsyncEngine) -> None:
    writers = _WriterQueue()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the one writer; FULL because a committed payment decision must
        # survive a power cut; busy_timeout waits for the writer instead of failing at once.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock at BEGIN: a deferred transaction that reads and then writes can fail with
        # SQLITE_BUSY without waiting, whereas IMMEDIATE waits on busy_timeout. A connection marked
        # `read_only=True` (it never writes) begins deferred: in WAL mode it reads a snapshot beside the one
        # writer instead of queueing for the lock (or, beside a writer of the same task, waiting forever).
        if conn.get_execution_options().get("read_only"):
            conn.exec_driver_sql("BEGIN")
            return
        info = conn.connection.info  # the pooled connection's own, kept until it is checked in
        writers.acquire(info)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release(info)
            raise

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # The transaction has ended (committed, or rolled back by the pool's reset) when its connection
        # comes back: the next writer may begin. The lock goes with the checkout, not the transaction: code
        # that commits on a connection it keeps, then writes on another, would wait for itself.
        writers.release(record.info)

    @event.listens_for(engine.sync_engine, "detach")
    def _on_detach(_dbapi_connection: Any, record: Any) -> None:
        # A connection dropped without being closed is cleaned up by the garbage collector, which detaches
        # it from the pool instead of checking it in: its transaction is gone with it, and so is its turn.
        writers.release(record.info)


def count_statements(engine: AsyncEngine, service: str) -> None:
    """Count the statements and commits the service sends (`doudi_db_statements_total`,
    `doudi_db_commits_total`): what each case costs the database, per service, under any load."""
    statements, commits = DB_STATEMENTS.labels(service), DB_COMMITS.labels(service)

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _on_statement(*_args: Any) -> None:
        statements.inc()

    @event.listens_for(engine.sync_engine, "commit")
    def _on_commit(_conn: Any) -> None:
        commits.inc()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
