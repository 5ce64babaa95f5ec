"""SQLite's writers in one process queue in the event loop for the database's one write lock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from shared.db import engine as engine_module
from shared.db.engine import make_engine


async def _table(path: Path) -> object:
    engine = make_engine(f"sqlite+aiosqlite:///{path}", pool_size=20, max_overflow=0)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE entries (n INTEGER)"))
    return engine


async def test_writers_take_the_lock_one_at_a_time_in_the_order_they_asked(tmp_path: Path) -> None:
    engine = await _table(tmp_path / "w.db")
    inside: list[int] = []
    order: list[int] = []
    overlaps = 0

    async def writer(n: int) -> None:
        nonlocal overlaps
        async with engine.begin() as conn:  # type: ignore[attr-defined]
            inside.append(n)
            overlaps += len(inside) > 1
            order.append(n)
            await conn.execute(text("INSERT INTO entries VALUES (:n)"), {"n": n})
            await asyncio.sleep(0.01)  # the lock is held across the transaction's awaits
            inside.remove(n)

    warm = [await engine.connect() for _ in range(12)]  # type: ignore[attr-defined]
    for conn in warm:  # pooled now: each writer below checks one out at once and goes straight to BEGIN
        await conn.close()
    tasks = []
    for n in range(12):
        tasks.append(asyncio.create_task(writer(n)))
        await asyncio.sleep(0.002)  # each asks after the one before
    await asyncio.gather(*tasks)
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        assert (await conn.execute(text("SELECT count(*) FROM entries"))).scalar() == 12
    await engine.dispose()  # type: ignore[attr-defined]
    assert overlaps == 0
    assert order == list(range(12))  # SQLite's busy handler would let whoever woke first in


async def test_a_second_transaction_on_one_connection_and_a_reader_do_not_wait_on_the_queue(tmp_path: Path) -> None:
    engine = await _table(tmp_path / "r.db")
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        await conn.execute(text("INSERT INTO entries VALUES (1)"))
        await conn.commit()
        await conn.execute(text("INSERT INTO entries VALUES (2)"))  # begins again on the same checkout
        reader = await engine.connect()  # type: ignore[attr-defined]
        reading = await reader.execution_options(read_only=True)
        seen = await asyncio.wait_for(reading.execute(text("SELECT count(*) FROM entries")), 5)
        assert seen.scalar() == 1  # its snapshot: the committed row, not the one in flight
        await reader.close()
        await conn.commit()
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        assert (await conn.execute(text("SELECT count(*) FROM entries"))).scalar() == 2
    await engine.dispose()  # type: ignore[attr-defined]


async def test_a_writer_that_waits_too_long_gets_database_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await _table(tmp_path / "t.db")
    monkeypatch.setattr(engine_module, "LOCK_TIMEOUT_SECONDS", 0.2)
    async with engine.begin() as holder:  # type: ignore[attr-defined]
        await holder.execute(text("INSERT INTO entries VALUES (1)"))
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as late:  # type: ignore[attr-defined]
                await late.execute(text("INSERT INTO entries VALUES (2)"))
    # The queue is free again once the holder has committed.
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(text("INSERT INTO entries VALUES (3)"))
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        assert sorted(r[0] for r in await conn.execute(text("SELECT n FROM entries"))) == [1, 3]
    await engine.dispose()  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore:The garbage collector is trying to clean up")  # what this test does on purpose
async def test_a_writer_dropped_without_closing_gives_its_turn_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    engine = await _table(tmp_path / "g.db")
    monkeypatch.setattr(engine_module, "LOCK_TIMEOUT_SECONDS", 2)

    async def abandon() -> None:
        conn = await engine.connect()  # type: ignore[attr-defined]
        await conn.execute(text("INSERT INTO entries VALUES (1)"))  # begun, holding the queue's turn, dropped

    await abandon()
    gc.collect()  # the pool detaches the abandoned connection (its transaction goes with it)
    await asyncio.sleep(0.05)
    async with engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(text("INSERT INTO entries VALUES (2)"))
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        assert [r[0] for r in await conn.execute(text("SELECT n FROM entries"))] == [2]
    await engine.dispose()  # type: ignore[attr-defined]
