"""Resident ID numbers: never stored readable, shown whole only to roles that need them, never logged."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from sqlalchemy import select, text

from intake.models import Member
from shared.logging import configure_logging
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import application


@pytest.mark.parametrize(
    ("role", "whole"),
    [("officer", True), ("admin", True), ("advisor", False), ("window", False)],
)
async def test_only_roles_that_need_it_see_the_whole_number(services: ServiceFactory, role: str, whole: bool) -> None:
    body = application()
    numbers = {m["ref"]: m["id_number"] for m in body["household"]["members"]}
    async with api_client(services, "intake", role="window", region="310115") as client:
        case_id = (await client.post("/v1/applications", json=body)).json()["case_id"]
        headers = {"Authorization": f"Bearer {token(services.data_dir, role, '310115')}"}
        case = (await client.get(f"/v1/cases/{case_id}", headers=headers)).json()
    for member in case["members"]:
        number = numbers[member["ref"]]
        assert member["id_number"] == (number if whole else number[:6] + "********" + number[-4:])


async def test_the_database_holds_no_readable_id_number(services: ServiceFactory) -> None:
    body = application()
    async with api_client(services, "intake") as client:
        await client.post("/v1/applications", json=body)
        async with client.runtime.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM members"))).all()
            dump = json.dumps([list(map(str, row)) for row in rows], ensure_ascii=False)
            hashes = (await conn.execute(select(Member.id_number_hash))).scalars().all()
    for member in body["household"]["members"]:
        assert member["id_number"] not in dump
        assert member["name"] in dump
    assert len(set(hashes)) == len(body["household"]["members"])


def test_logs_redact_id_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("intake", "INFO", json=True)
    try:
        structlog.get_logger("test").warning("lookup", note="member 310115198005010013 not found")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        structlog.reset_defaults()  # the logger was bound to the captured stderr, which closes with this test
        structlog.contextvars.clear_contextvars()
        logging.getLogger().handlers.clear()
    assert "310115198005010013" not in line
    assert "310115********0013" in line
