from __future__ import annotations

import uuid
from decimal import Decimal

from referral.models import Need, messaging
from shared.contracts.eligibility import DeterminationDenied, Reason
from tests.conftest import ServiceFactory, count, deliver_twice, manual
from tests.factories import TODAY


class TestPublishNeedForDenial:
    async def test_delivered_twice_publishes_one_masked_need(self, services: ServiceFactory) -> None:
        async with manual(services, "referral") as runtime:
            case_id = str(uuid.uuid4())
            event = DeterminationDenied(
                case_id=case_id,
                determination_id=str(uuid.uuid4()),
                programme="subsistence_allowance",
                region="310115",
                decided_on=TODAY,
                monthly_amount=Decimal("0.00"),
                reasons=[Reason(code="income_not_below_standard")],
            )
            await deliver_twice(runtime, event, key=case_id)
            assert await count(runtime, Need, Need.case_id == case_id) == 1
            assert await count(runtime, messaging.outbox, messaging.outbox.c.kafka_key == case_id) == 1
