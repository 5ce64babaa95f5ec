from decimal import Decimal

import pytest
from pydantic import ValidationError

from shared.contracts.base import money_str
from shared.contracts.intake import Income
from shared.contracts.registry import EVENT_TYPES
from shared.messaging.topics import TOPICS, all_topics, topic_for

IRREGULAR_PAST = frozenset({"withdrawn"})


class TestMoney:
    def test_parses_strings_to_exact_decimals(self) -> None:
        assert Income(kind="wage", monthly="800.1").monthly == Decimal("800.10")

    def test_serialises_with_two_decimals(self) -> None:
        assert Income(kind="wage", monthly="5").model_dump(mode="json")["monthly"] == "5.00"
        assert money_str(Decimal("0.005")) == "0.01"

    @pytest.mark.parametrize("bad", [800.5, "-1.00", "1.234", "abc", "NaN", "Infinity"])
    def test_refuses_floats_negatives_and_fractions_of_a_fen(self, bad: object) -> None:
        with pytest.raises(ValidationError):
            Income(kind="wage", monthly=bad)


class TestTopics:
    def test_every_event_type_has_a_registered_topic(self) -> None:
        names = {t.name for t in TOPICS}
        for event_type in EVENT_TYPES:
            assert topic_for(event_type) in names

    def test_every_topic_has_a_dead_letter_twin(self) -> None:
        created = dict(all_topics())
        for topic in TOPICS:
            assert created[topic.name] == topic.partitions
            assert topic.dlq in created

    def test_unknown_event_type_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no topic"):
            topic_for("nobody.nothing.happened")

    def test_event_types_follow_the_naming_rule(self) -> None:
        """`<service>.<aggregate>.<past_verb>`; a few past participles do not end in -ed. A verb may name what it
        acts on first (`consent_withdrawn`): its last word is the past participle."""
        for event_type in EVENT_TYPES:
            service, _aggregate, verb = event_type.split(".")
            assert service in {"intake", "eligibility", "disbursement", "referral"}
            participle = verb.rsplit("_", 1)[-1]
            assert participle.endswith("ed") or participle in IRREGULAR_PAST, event_type
