"""Bulk inserts (COPY on PostgreSQL, an executemany on SQLite) write exactly what an INSERT would: money to
the fen, times in UTC, JSON, defaults for columns left out, each row's values in its own columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select

from disbursement.models import LedgerEntry, LedgerTransaction, Payment, messaging
from shared.db.bulk import insert_rows
from tests.conftest import ServiceFactory, manual


def outbox_row(
    event_id: str,
    *,
    key: str = "k",
    payload: dict[str, object] | None = None,
    created_at: datetime = datetime(2026, 12, 1, tzinfo=UTC),
) -> dict[str, object]:
    """An outbox row as `Outbox.add_many` writes it (`seq` and `published_at` left to their defaults)."""
    return {
        "event_id": event_id,
        "topic": "doudi.test",
        "kafka_key": key,
        "event_type": "test.bulk",
        "payload": payload or {},
        "traceparent": "",
        "correlation_id": "",
        "created_at": created_at,
        "attempts": 0,
    }


async def test_rows_arrive_as_an_insert_would_write_them(services: ServiceFactory) -> None:
    async with manual(services, "disbursement") as runtime:
        shanghai = timezone(timedelta(hours=8))
        outbox = [
            outbox_row(
                f"bulk-{i}",
                key=f"k{i}",
                payload={"amount": "1.50", "note": "兜底", "n": i},
                created_at=datetime(2026, 12, 1, 8, 0, tzinfo=shanghai),
            )
            for i in range(3)
        ]
        outbox[1] = dict(reversed(list(outbox[1].items())))  # keys in another order: values still land right
        txn = {
            "txn_id": "bulk-txn",
            "kind": "settlement",
            "payment_id": "bulk-payment",
            "reverses": None,
            "posted_at": datetime(2026, 12, 1, tzinfo=UTC),
            "description": "test",
        }
        entries = [
            {
                "txn_id": "bulk-txn",
                "account": account,
                "side": side,
                "amount": Decimal("1330.5"),
                "programme": "subsistence_allowance",
                "region": "310115",
                "case_id": "c",
            }
            for account, side in (("benefits_paid", "debit"), ("fund_bank", "credit"))
        ]
        async with runtime.uow() as uow:
            await _a_payment_to_post_against(uow)
            await insert_rows(uow.session, messaging.outbox, outbox)
            await insert_rows(uow.session, LedgerTransaction.__table__, [txn])
            await insert_rows(uow.session, LedgerEntry.__table__, entries)
            await insert_rows(uow.session, LedgerEntry.__table__, [])
            await uow.commit()
        async with runtime.engine.connect() as conn:
            table = messaging.outbox
            rows = (
                (await conn.execute(select(table).where(table.c.event_type == "test.bulk").order_by(table.c.seq)))
                .mappings()
                .all()
            )
            assert [(r["event_id"], r["kafka_key"], r["payload"]["n"]) for r in rows] == [
                ("bulk-0", "k0", 0),
                ("bulk-1", "k1", 1),
                ("bulk-2", "k2", 2),
            ]
            assert rows[0]["payload"] == {"amount": "1.50", "note": "兜底", "n": 0}
            assert rows[0]["created_at"] == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
            assert rows[0]["published_at"] is None  # defaults applied
            assert rows[0]["seq"] < rows[2]["seq"]
            ledger = LedgerEntry.__table__
            written = (await conn.execute(select(ledger.c.side, ledger.c.amount, ledger.c.entry_id))).all()
            assert sorted((side, amount) for side, amount, _ in written) == [
                ("credit", Decimal("1330.50")),
                ("debit", Decimal("1330.50")),
            ]
            assert all(entry_id is not None for *_, entry_id in written)


async def _a_payment_to_post_against(uow: object) -> None:
    """The ledger's foreign keys want a payment (and its entitlement) to exist."""
    from disbursement.models import Entitlement

    now = datetime(2026, 12, 1, tzinfo=UTC)
    session = uow.session  # type: ignore[attr-defined]
    session.add(
        Entitlement(
            entitlement_id="bulk-entitlement",
            determination_id="bulk-determination",
            case_id="c",
            programme="subsistence_allowance",
            region="310115",
            kind="monthly",
            amount=Decimal("1330.50"),
            first_period="2026-12",
            payee_account="6222021001112223",
            status="active",
            created_at=now,
        )
    )
    await session.flush()
    session.add(
        Payment(
            payment_id="bulk-payment",
            entitlement_id="bulk-entitlement",
            case_id="c",
            period="2026-12",
            amount=Decimal("1330.50"),
            status="settled",
            attempts=1,
            created_at=now,
            updated_at=now,
        )
    )
    await session.flush()


async def test_rows_sent_first_in_a_transaction_go_with_its_rollback(services: ServiceFactory) -> None:
    """On asyncpg SQLAlchemy opens the transaction with its first statement; a COPY sent before any would
    have committed on its own."""
    async with manual(services, "disbursement") as runtime:
        row = outbox_row("bulk-rolled-back")
        async with runtime.uow() as uow:
            await insert_rows(uow.session, messaging.outbox, [row])
            await uow.rollback()
        table = messaging.outbox
        async with runtime.engine.connect() as conn:
            left = (await conn.execute(select(table.c.seq).where(table.c.event_id == "bulk-rolled-back"))).all()
        assert left == []
