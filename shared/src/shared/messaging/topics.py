"""The one registry of topics: the embedded broker and production provisioning both create exactly these.

Topic names are `<service>.<aggregate>`; every topic has a dead-letter twin `<topic>.dlq`. Partition counts are
the unit of consumer parallelism, so they bound how many replicas of a worker can share the load.
"""

from __future__ import annotations

from dataclasses import dataclass

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    description: str

    @property
    def dlq(self) -> str:
        return self.name + DLQ_SUFFIX


TOPICS: tuple[Topic, ...] = (
    Topic("intake.application", 8, "applications submitted at the window, by advisors, online or by discovery"),
    Topic("intake.signal", 8, "other departments' signals about a person (政策找人), matched to a household"),
    Topic("eligibility.verification", 8, "economic-status verification (means test) results"),
    Topic("eligibility.determination", 8, "eligibility decisions per programme: proposed, approved, denied"),
    Topic("eligibility.lead", 8, "households a signal or a sweep shows may qualify: leads for an advisor's visit"),
    Topic("disbursement.payment", 8, "payments to households: settled, failed, returned"),
    Topic("disbursement.reconciliation", 2, "mismatches nightly reconciliation found"),
    Topic("referral.need", 8, "needs published to charities, claims, offers matched to cases, and deliveries"),
    Topic("referral.service", 4, "service referrals (counselling, shelter) to providers, and their outcomes"),
)
DLQ_PARTITIONS = 1
_NAMES = frozenset(t.name for t in TOPICS)


def topic_for(event_type: str) -> str:
    """`intake.application.submitted` travels on `intake.application`."""
    service, aggregate, _verb = event_type.split(".", 2)
    name = f"{service}.{aggregate}"
    if name not in _NAMES:
        raise ValueError(f"no topic registered for event type {event_type!r}")
    return name


def all_topics() -> list[tuple[str, int]]:
    """Every (topic, partitions) pair to create, dead-letter topics included."""
    pairs: list[tuple[str, int]] = []
    for topic in TOPICS:
        pairs.append((topic.name, topic.partitions))
        pairs.append((topic.dlq, DLQ_PARTITIONS))
    return pairs
