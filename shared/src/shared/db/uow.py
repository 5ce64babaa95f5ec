"""Unit of work: one database transaction; only the entrypoint that opened it commits."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.messaging.outbox import Outbox


class UnitOfWork:
    """`async with UnitOfWork(...) as uow:` opens a session; leaving without `commit()` rolls back.

    `uow.outbox` writes events into the same transaction as the state change. After a successful commit
    the `on_commit` callbacks run, which is how an in-process relay learns there is something to send.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox_factory: Callable[[AsyncSession], Outbox],
        on_commit: list[Callable[[], None]] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._outbox_factory = outbox_factory
        self._on_commit = on_commit or []
        self.session: AsyncSession
        self.outbox: Outbox

    async def __aenter__(self) -> Self:
        self.session = self._sessionmaker()
        self.outbox = self._outbox_factory(self.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed; unlike rollback() it does not expire the loaded
        # objects, so a read can build its response after the transaction has ended.
        await self.session.close()

    async def commit(self) -> None:
        wrote_events = self.outbox.pending > 0
        await self.session.commit()
        self.outbox.pending = 0
        if wrote_events:
            for callback in self._on_commit:
                callback()

    async def rollback(self) -> None:
        await self.session.rollback()
        self.outbox.pending = 0
