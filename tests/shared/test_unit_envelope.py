from datetime import UTC, datetime

import pytest

from shared.messaging.envelope import Envelope, MalformedEnvelope


def make_envelope() -> Envelope:
    return Envelope(
        id="e-1",
        type="intake.application.submitted",
        source="/doudi/intake",
        subject="case-1",
        time=datetime(2026, 11, 22, 8, 0, tzinfo=UTC),
        data={"case_id": "case-1", "amount": "12.30"},
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        correlation_id="corr-1",
    )


class TestEnvelope:
    def test_round_trips_through_kafka_binary_mode(self) -> None:
        envelope = make_envelope()
        key, value, headers = envelope.to_kafka()
        names = dict(headers)
        assert key == b"case-1"
        assert names["ce_id"] == b"e-1"
        assert names["ce_type"] == b"intake.application.submitted"
        assert names["ce_subject"] == b"case-1"
        assert names["ce_specversion"] == b"1.0"
        assert names["content-type"] == b"application/json"
        assert names["traceparent"].startswith(b"00-0af7")
        assert Envelope.from_kafka(key, value, headers) == envelope

    def test_money_stays_a_string(self) -> None:
        _key, value, _headers = make_envelope().to_kafka()
        assert b'"12.30"' in value

    @pytest.mark.parametrize(
        ("value", "headers"),
        [
            (
                b"not json",
                [
                    ("ce_id", b"1"),
                    ("ce_type", b"t"),
                    ("ce_source", b"s"),
                    ("ce_subject", b"c"),
                    ("ce_specversion", b"1.0"),
                    ("content-type", b"application/json"),
                ],
            ),
            (b"{}", []),
            (
                b"[1, 2]",
                [
                    ("ce_id", b"1"),
                    ("ce_type", b"t"),
                    ("ce_source", b"s"),
                    ("ce_subject", b"c"),
                    ("ce_specversion", b"1.0"),
                    ("content-type", b"application/json"),
                ],
            ),
            (
                b"{}",
                [
                    ("ce_id", b"1"),
                    ("ce_type", b"t"),
                    ("ce_source", b"s"),
                    ("ce_specversion", b"1.0"),
                    ("content-type", b"application/json"),
                ],
            ),
        ],
        ids=["bad-json", "no-headers", "not-an-object", "no-subject"],
    )
    def test_rejects_malformed_records(self, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        with pytest.raises(MalformedEnvelope):
            Envelope.from_kafka(b"k", value, headers)
