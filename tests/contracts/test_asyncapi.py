"""The committed AsyncAPI document is exactly what the contracts generate: it cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

from doudi.asyncapi import build

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_the_committed_document_matches_the_contracts() -> None:
    committed = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(build())), (
        "regenerate with: .venv/bin/doudi asyncapi --output docs/asyncapi.json"
    )


def test_every_event_has_a_sender_and_every_handled_event_a_receiver() -> None:
    document = build()
    operations = document["operations"].values()
    for message in document["components"]["messages"].values():
        event_type = message["name"]
        assert any(
            o["action"] == "send" and event_type.replace(".", "_") in o["messages"][0]["$ref"] for o in operations
        )
    receivers = {o["summary"].split(" consumes ")[1].split(" ")[0] for o in operations if o["action"] == "receive"}
    assert "intake.application.submitted" in receivers
    assert "eligibility.determination.approved" in receivers
