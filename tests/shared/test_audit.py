"""The audit log: every read of a case and every refusal is an entry; tampering breaks the chain and
`doudi audit verify` names the first broken link."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, update

from intake.models import messaging
from shared.audit import verify
from tests.conftest import ServiceFactory, api_client, token
from tests.factories import application


async def test_reads_and_refusals_are_recorded_and_a_tampered_row_is_found(services: ServiceFactory) -> None:
    table = messaging.audit
    async with api_client(services, "intake", role="window", region="310115") as client:
        case_id = (await client.post("/v1/applications", json=application())).json()["case_id"]
        await client.get(f"/v1/cases/{case_id}")
        stranger = {"Authorization": f"Bearer {token(services.data_dir, 'advisor', '310112', 'outsider')}"}
        assert (await client.get(f"/v1/cases/{case_id}", headers=stranger)).status_code == 404
        async with client.runtime.engine.connect() as conn:
            rows = (await conn.execute(select(table).order_by(table.c.seq))).mappings().all()
            assert [(r["action"], r["outcome"], r["subject"]) for r in rows] == [
                ("create", "ok", "tester"),
                ("read", "ok", "tester"),
                ("read", "denied_out_of_region", "outsider"),
            ]
            assert rows[0]["client"]
            assert (await verify(conn, table)).intact
        async with client.runtime.engine.begin() as conn:
            await conn.execute(update(table).where(table.c.seq == 2).values(subject="someone-else"))
        async with client.runtime.engine.connect() as conn:
            verdict = await verify(conn, table)
        assert verdict.broken_at == 2
        assert verdict.entries == 1

        cli = await asyncio.to_thread(
            subprocess.run,
            [str(Path(sys.executable).parent / "doudi"), "audit", "verify", "--service", "intake"],
            env={
                **os.environ,
                "INTAKE_DATABASE_URL": services.urls["intake"],
                "DOUDI_DATA_DIR": str(services.data_dir),
            },
            capture_output=True,
            text=True,
        )
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert "BROKEN at entry 2" in cli.stdout


async def test_a_deleted_row_is_found(services: ServiceFactory) -> None:
    from sqlalchemy import delete

    table = messaging.audit
    async with api_client(services, "intake") as client:
        case_id = (await client.post("/v1/applications", json=application())).json()["case_id"]
        for _ in range(3):
            await client.get(f"/v1/cases/{case_id}")
        async with client.runtime.engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.seq == 3))
        async with client.runtime.engine.connect() as conn:
            verdict = await verify(conn, table)
    assert verdict.broken_at == 3
    assert "missing" in verdict.reason
