"""The outbox relay and the consumer runner against the real broker and a real database."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from referral.models import Need, messaging
from shared.contracts.eligibility import DeterminationDenied, Reason
from shared.contracts.referral import NeedPublished
from shared.db.uow import UnitOfWork
from shared.messaging.consumer import ConsumerRunner
from shared.messaging.envelope import Envelope
from tests.conftest import ServiceFactory, count, eventually, manual
from tests.factories import TODAY
from tests.kafka_helpers import (
    NoCommitConsumer,
    envelope_for,
    fetch_records,
    headers_of,
    publish,
    publish_raw,
    read_topic,
)


def denied(case_id: str) -> DeterminationDenied:
    return DeterminationDenied(
        case_id=case_id,
        determination_id=str(uuid.uuid4()),
        programme="subsistence_allowance",
        region="310115",
        decided_on=TODAY,
        monthly_amount=Decimal("0.00"),
        reasons=[Reason(code="income_not_below_standard")],
    )


async def count_needs(runtime: Any, case_id: str | None = None) -> int:
    async with runtime.engine.connect() as conn:
        statement = select(func.count()).select_from(Need)
        if case_id:
            statement = statement.where(Need.case_id == case_id)
        return int((await conn.execute(statement)).scalar_one())


def runner_for(runtime: Any, handlers: dict[str, Any], **kwargs: Any) -> ConsumerRunner:
    options: dict[str, Any] = {"max_attempts": 3, "backoff_seconds": 0.01, "group_id": f"test-{uuid.uuid4()}"}
    options.update(kwargs)
    return ConsumerRunner(
        service="referral",
        bootstrap_servers=runtime.settings.kafka_bootstrap_servers,
        handlers=handlers,
        uow_factory=runtime.uow,
        inbox_table=messaging.inbox,
        dlq_producer=runtime.producer,
        **options,
    )


class TestOutboxRelay:
    async def test_publishes_in_order_per_key_and_marks_rows(self, services: ServiceFactory) -> None:
        async with manual(services, "referral") as runtime:
            from shared.messaging.relay import OutboxRelay

            relay = OutboxRelay(
                engine=runtime.engine,
                table=messaging.outbox,
                producer=runtime.producer,
                service="referral",
                source="/doudi/referral",
                batch_size=7,
            )
            keys = [str(uuid.uuid4()) for _ in range(3)]
            async with runtime.uow() as uow:
                for n in range(10):
                    for key in keys:
                        await uow.outbox.add(
                            NeedPublished(case_id=key, need_id=f"{n:02d}", category="food", area="310115"),
                            key=key,
                        )
                await uow.commit()
            while (await relay.publish_batch())[0] > 0:
                pass
            assert await relay.backlog() == 0
            records = await read_topic(
                runtime.settings.kafka_bootstrap_servers, "referral.need", keys=set(keys), expect=30
            )
            assert len(records) == 30
            for key in keys:
                seen = [
                    Envelope.from_kafka(r.key, r.value, r.headers).data["need_id"]
                    for r in records
                    if r.key.decode() == key
                ]
                assert seen == [f"{n:02d}" for n in range(10)]
                assert len({r.partition for r in records if r.key.decode() == key}) == 1

    async def test_a_crash_before_marking_republishes_and_the_consumer_ignores_the_duplicate(
        self, services: ServiceFactory
    ) -> None:
        async with manual(services, "referral") as runtime:
            from referral.handlers import on_determination_denied
            from shared.messaging.relay import OutboxRelay

            relay = OutboxRelay(
                engine=runtime.engine,
                table=messaging.outbox,
                producer=runtime.producer,
                service="referral",
                source="/tests",
            )
            case_id = str(uuid.uuid4())
            # An upstream service's outbox is simulated with this one's table: write, publish, then "crash"
            # before the mark by clearing published_at, and publish again.
            async with runtime.uow() as uow:
                await uow.outbox.add(denied(case_id), key=case_id)
                await uow.commit()
            await relay.publish_batch()
            async with runtime.engine.begin() as conn:
                await conn.execute(update(messaging.outbox).values(published_at=None))
            await relay.publish_batch()
            bootstrap = runtime.settings.kafka_bootstrap_servers
            batches = await fetch_records(bootstrap, "eligibility.determination", keys={case_id}, expect=2)
            assert sum(len(r) for r in batches.values()) == 2
            runner = runner_for(runtime, {"eligibility.determination.denied": on_determination_denied})
            await runner.process(NoCommitConsumer(), batches)
            assert await count_needs(runtime, case_id) == 1

    async def test_republishing_since_a_moment_sends_those_events_again_in_order_with_their_ids(
        self, services: ServiceFactory
    ) -> None:
        """After the broker lost its log: what was published since then goes out again, nothing older."""
        from datetime import timedelta

        from shared.db.base import utcnow
        from shared.messaging.relay import OutboxRelay, republish_since

        async with manual(services, "referral") as runtime:
            relay = OutboxRelay(
                engine=runtime.engine,
                table=messaging.outbox,
                producer=runtime.producer,
                service="referral",
                source="/tests",
            )
            key = str(uuid.uuid4())
            async with runtime.uow() as uow:
                for n in range(4):
                    await uow.outbox.add(
                        NeedPublished(case_id=key, need_id=f"{n:02d}", category="food", area="310115"), key=key
                    )
                await uow.commit()
            await relay.publish_batch()
            outbox = messaging.outbox
            async with runtime.engine.begin() as conn:  # the first two went out an hour before the loss
                ids = list((await conn.execute(select(outbox.c.event_id).order_by(outbox.c.seq))).scalars())
                old = utcnow() - timedelta(hours=1)
                await conn.execute(update(outbox).where(outbox.c.event_id.in_(ids[:2])).values(published_at=old))
            assert await republish_since(runtime.engine, outbox, utcnow() - timedelta(minutes=5)) == 2
            assert await relay.backlog() == 2
            await relay.publish_batch()
            records = await read_topic(runtime.settings.kafka_bootstrap_servers, "referral.need", keys={key}, expect=6)
            sent = [Envelope.from_kafka(r.key, r.value, r.headers).id for r in records]
            assert sent == [*ids, *ids[2:]]  # the last two again, same ids, same order

    async def test_republishing_a_case_sends_its_events_again_and_no_other_case(self, services: ServiceFactory) -> None:
        from shared.messaging.relay import OutboxRelay, republish_keys

        async with manual(services, "referral") as runtime:
            relay = OutboxRelay(
                engine=runtime.engine,
                table=messaging.outbox,
                producer=runtime.producer,
                service="referral",
                source="/tests",
            )
            stuck, other = str(uuid.uuid4()), str(uuid.uuid4())
            async with runtime.uow() as uow:
                for n, key in enumerate((stuck, other, stuck)):
                    await uow.outbox.add(
                        NeedPublished(case_id=key, need_id=f"{n:02d}", category="food", area="310115"), key=key
                    )
                await uow.commit()
            await relay.publish_batch()
            assert await republish_keys(runtime.engine, messaging.outbox, [stuck]) == 2
            await relay.publish_batch()
            records = await read_topic(
                runtime.settings.kafka_bootstrap_servers, "referral.need", keys={stuck, other}, expect=5
            )
            sent = [(r.key.decode(), Envelope.from_kafka(r.key, r.value, r.headers).data["need_id"]) for r in records]
            assert sorted(sent) == sorted([(stuck, "00"), (other, "01"), (stuck, "02"), (stuck, "00"), (stuck, "02")])


class TestConsumerRunner:
    async def test_redelivery_after_a_crash_between_db_commit_and_offset_commit_has_no_second_effect(
        self, services: ServiceFactory
    ) -> None:
        from referral.handlers import on_determination_denied

        async with manual(services, "referral") as runtime:
            case_id = str(uuid.uuid4())
            bootstrap = runtime.settings.kafka_bootstrap_servers
            await publish(bootstrap, envelope_for(denied(case_id), key=case_id))
            batches = await fetch_records(bootstrap, "eligibility.determination", keys={case_id}, expect=1)
            runner = runner_for(runtime, {"eligibility.determination.denied": on_determination_denied})
            crashed = NoCommitConsumer()
            await runner.process(crashed, batches)  # effects committed; the offset commit "never happened"
            await runner.process(NoCommitConsumer(), batches)  # so the broker delivers it again
            assert await count_needs(runtime, case_id) == 1
            assert crashed.commits, "offsets are committed after the database commit"

    async def test_each_applied_event_is_a_link_in_the_audit_chain_and_a_redelivery_is_not(
        self, services: ServiceFactory
    ) -> None:
        from referral.handlers import on_determination_denied
        from shared import audit

        async with manual(services, "referral") as runtime:
            case_id = str(uuid.uuid4())
            bootstrap = runtime.settings.kafka_bootstrap_servers
            sent = envelope_for(denied(case_id), key=case_id)
            await publish(bootstrap, sent, sent)
            batches = await fetch_records(bootstrap, "eligibility.determination", keys={case_id}, expect=2)
            runner = runner_for(
                runtime, {"eligibility.determination.denied": on_determination_denied}, audit_table=messaging.audit
            )
            await runner.process(NoCommitConsumer(), batches)
            table = messaging.audit
            async with runtime.engine.connect() as conn:
                rows = (await conn.execute(select(table).where(table.c.resource_id == case_id))).mappings().all()
                verdict = await audit.verify(conn, table)
            assert [(r["action"], r["resource"], r["role"]) for r in rows] == [
                ("apply_event", "eligibility.determination.denied", "worker")
            ]
            assert sent.id in rows[0]["purpose"]
            assert verdict.intact

    async def test_a_failing_message_is_retried_then_dead_lettered_and_the_partition_moves_on(
        self, services: ServiceFactory
    ) -> None:
        from referral.handlers import on_determination_denied

        attempts: list[str] = []

        async def flaky(uow: UnitOfWork, event: DeterminationDenied, envelope: Envelope) -> None:
            if event.reasons[0].code == "poison":
                attempts.append(envelope.id)
                raise RuntimeError("handler cannot cope")
            await on_determination_denied(uow, event, envelope)

        async with manual(services, "referral") as runtime:
            case_id = str(uuid.uuid4())
            bootstrap = runtime.settings.kafka_bootstrap_servers
            bad = denied(case_id).model_copy(update={"reasons": [Reason(code="poison")]})
            bad_envelope = envelope_for(bad, key=case_id)
            await publish(
                bootstrap,
                envelope_for(denied(case_id), key=case_id),
                bad_envelope,
                envelope_for(denied(case_id), key=case_id),
            )
            batches = await fetch_records(bootstrap, "eligibility.determination", keys={case_id}, expect=3)
            consumer = NoCommitConsumer()
            runner = runner_for(runtime, {"eligibility.determination.denied": flaky})
            await runner.process(consumer, batches)
            # Once inside the failed batch, then three times on its own before it is dead-lettered.
            assert attempts == [bad_envelope.id] * 4
            # The good ones on either side were applied (referral keeps one need per case, so count the inbox).
            inbox = messaging.inbox
            assert await count(runtime, inbox, inbox.c.consumer == runner.group_id) == 2
            assert await count_needs(runtime, case_id) == 1
            ((tp, records),) = batches.items()
            assert consumer.commits[-1] == {tp: records[-1].offset + 1}
            dead = await read_topic(bootstrap, "eligibility.determination.dlq", keys={case_id}, expect=1)
            assert len(dead) == 1
            headers = headers_of(dead[0])
            assert headers["ce_id"] == bad_envelope.id
            assert headers["x-exception-class"] == "RuntimeError"
            assert "cannot cope" in headers["x-exception-message"]
            assert headers["x-attempts"] == "3"
            assert headers["x-original-topic"] == "eligibility.determination"

    async def test_a_database_outage_is_never_dead_lettered(self, services: ServiceFactory) -> None:
        from sqlalchemy.exc import OperationalError

        async def database_down(uow: UnitOfWork, event: DeterminationDenied, envelope: Envelope) -> None:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("database is down"))

        async with manual(services, "referral") as runtime:
            case_id = str(uuid.uuid4())
            bootstrap = runtime.settings.kafka_bootstrap_servers
            await publish(bootstrap, envelope_for(denied(case_id), key=case_id))
            batches = await fetch_records(bootstrap, "eligibility.determination", keys={case_id}, expect=1)
            consumer = NoCommitConsumer()
            with pytest.raises(OperationalError):
                await runner_for(runtime, {"eligibility.determination.denied": database_down}).process(
                    consumer, batches
                )
            assert consumer.commits == [], "no offset moves past a record that was not applied"
            dead = await read_topic(bootstrap, "eligibility.determination.dlq", keys={case_id}, expect=1, timeout=2)
            assert dead == []

    async def test_an_unreadable_record_goes_to_the_dlq_without_retries(self, services: ServiceFactory) -> None:
        from referral.handlers import on_determination_denied

        async with manual(services, "referral") as runtime:
            case_id = str(uuid.uuid4())
            bootstrap = runtime.settings.kafka_bootstrap_servers
            await publish_raw(bootstrap, "eligibility.determination", case_id.encode(), b"\x00garbage", [])
            contract_breaker = envelope_for(denied(case_id), key=case_id)
            contract_breaker = Envelope(**{**contract_breaker.__dict__, "data": {"case_id": case_id}})
            await publish(bootstrap, contract_breaker, envelope_for(denied(case_id), key=case_id))
            batches = await fetch_records(bootstrap, "eligibility.determination", keys={case_id}, expect=3)
            await runner_for(runtime, {"eligibility.determination.denied": on_determination_denied}).process(
                NoCommitConsumer(), batches
            )
            assert await count_needs(runtime, case_id) == 1
            dead = await read_topic(bootstrap, "eligibility.determination.dlq", keys={case_id}, expect=2)
            classes = sorted(headers_of(r)["x-exception-class"] for r in dead)
            assert classes == ["MalformedEnvelope", "PoisonMessage"]
            assert all(headers_of(r)["x-attempts"] == "0" for r in dead)

    async def test_the_running_consumer_applies_events_and_commits_offsets(self, services: ServiceFactory) -> None:
        async with services.run("referral", roles={"worker"}) as runtime:
            bootstrap = runtime.settings.kafka_bootstrap_servers
            case_ids = [str(uuid.uuid4()) for _ in range(20)]
            await publish(bootstrap, *[envelope_for(denied(c), key=c) for c in case_ids])
            assert runtime.runner is not None
            await eventually(lambda: _all_applied(runtime, case_ids))
            assert not runtime.runner.stalled
            await eventually(lambda: _offsets_committed(bootstrap, runtime.runner.group_id))

    async def test_the_watchdog_replaces_a_consumer_that_stops_polling(self, services: ServiceFactory) -> None:
        async with manual(services, "referral") as runtime:
            runner = runner_for(runtime, {"eligibility.determination.denied": lambda *a: None}, stall_seconds=0.3)
            calls: list[int] = []

            async def wedged(stop: asyncio.Event) -> None:
                calls.append(1)
                if len(calls) == 1:
                    await asyncio.sleep(3600)  # never polls again, like aiokafka after a broker restart
                await stop.wait()

            runner._consume = wedged  # type: ignore[method-assign]
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop))
            await eventually(lambda: len(calls) == 2, timeout=5)
            assert runner.restarts == 1
            stop.set()
            await asyncio.wait_for(task, 5)


async def _all_applied(runtime: Any, case_ids: list[str]) -> bool:
    return await count_needs(runtime) >= len(case_ids) and all([await count_needs(runtime, c) == 1 for c in case_ids])


async def _offsets_committed(bootstrap: str, group_id: str) -> bool:
    """Every partition's committed offset has reached its end: nothing consumed is left uncommitted."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await probe.start()
    try:
        partitions = [
            TopicPartition("eligibility.determination", p)
            for p in probe.partitions_for_topic("eligibility.determination") or ()
        ]
        ends = await probe.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] and (await probe.committed(tp) or 0) < ends[tp]:
                return False
        return bool(partitions)
    finally:
        await probe.stop()
