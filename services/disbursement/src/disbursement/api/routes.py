from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from disbursement import advances, callbacks, export, ledger, payment_run, reconciliation, service
from disbursement.models import Entitlement, LedgerEntry, Reconciliation, messaging
from disbursement.settings import DisbursementSettings
from shared import audit
from shared.auth import Principal
from shared.authz import PrincipalDep, authorize, client_of, region_clause
from shared.contracts.base import Money
from shared.errors import DomainError, NotFound, Unprocessable
from shared.service import RuntimeDep
from shared.signing import SIGNATURE_HEADER, verify

router = APIRouter(prefix="/v1", tags=["payments"])
# The bank's callback proves itself by signature, not a bearer token; every other route goes through the matrix.
protected = APIRouter(prefix="/v1", tags=["payments"], dependencies=[Depends(authorize)])


BANK = Principal(subject="bank-callback", role="machine", region="000000")


class BadSignature(DomainError):
    status_code = 401
    title = "Bad signature"


class PaymentRead(BaseModel):
    payment_id: str
    entitlement_id: str
    case_id: str
    period: str
    amount: Money
    status: str
    bank_reference: str | None
    attempts: int
    last_error: str | None
    updated_at: datetime


@router.post("/bank/callbacks", responses={401: {"description": "signature missing or wrong"}})
async def bank_callback(request: Request, runtime: RuntimeDep) -> dict[str, str]:
    """The bank's signed status callback (`X-Signature: sha256=<hex HMAC of the body>`)."""
    settings = runtime.settings
    assert isinstance(settings, DisbursementSettings)
    body = await request.body()
    if not verify(settings.bank_callback_secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise BadSignature("The callback's signature is missing or does not match.")
    try:
        callback = callbacks.BankCallback.model_validate_json(body)
    except ValidationError as exc:
        raise Unprocessable(f"callback body: {exc.errors()[0]['msg']}") from None
    async with runtime.uow() as uow:
        status = await callbacks.apply_bank_callback(uow, callback, settings.submit_max_attempts)
        await audit.record(
            uow.session,
            messaging.audit,
            BANK,
            action="bank_callback",
            resource="payment",
            resource_id=callback.payment_id,
            outcome=status,
            client=client_of(request),
        )
        await uow.commit()
    return {"payment_id": callback.payment_id, "status": status}


@router.post("/bank/batch-callbacks", responses={401: {"description": "signature missing or wrong"}})
async def bank_batch_callback(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """The bank's signed results of a whole batch (回盘), applied in one transaction; the same rules as one
    callback at a time (duplicates and late words change nothing)."""
    settings = runtime.settings
    assert isinstance(settings, DisbursementSettings)
    body = await request.body()
    if not verify(settings.bank_callback_secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise BadSignature("The callback's signature is missing or does not match.")
    try:
        batch = callbacks.BatchCallback.model_validate_json(body)
    except ValidationError as exc:
        raise Unprocessable(f"batch callback body: {exc.errors()[0]['msg']}") from None
    async with runtime.uow() as uow:
        statuses = await callbacks.apply_bank_callbacks(uow, batch.results, settings.submit_max_attempts)
        await audit.record(
            uow.session,
            messaging.audit,
            BANK,
            action="bank_batch_callback",
            resource="payment_batch",
            resource_id=batch.batch_id,
            outcome=f"{len(statuses)} of {len(batch.results)} known",
            client=client_of(request),
        )
        await uow.commit()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return {"batch_id": batch.batch_id, "payments": len(statuses), "by_status": counts}


@protected.get("/payments/{payment_id}", response_model=PaymentRead)
async def read_payment(payment_id: str, runtime: RuntimeDep, principal: PrincipalDep) -> PaymentRead:
    async with runtime.uow() as uow:
        payment = await service.get_payment(uow, payment_id, principal)
    return PaymentRead.model_validate(payment, from_attributes=True)


class PaymentRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")


@protected.post("/payment-runs", status_code=201)
async def create_payment_run(
    body: PaymentRunCreate, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Instruct every payment due for the month within the caller's region. Running a month again resumes
    it: nothing already instructed is instructed twice."""
    async with runtime.uow() as uow:
        report = await payment_run.run_payments(uow, body.period, principal)
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action="payment_run",
            resource="period",
            resource_id=body.period,
            client=client_of(request),
            purpose="monthly payment run",
        )
        await uow.commit()
    return report


@protected.get("/payment-runs/{period}")
async def read_payment_run(period: str, runtime: RuntimeDep, principal: PrincipalDep) -> dict[str, Any]:
    """The month's payments within the caller's region: paid, failed, held, in flight."""
    async with runtime.uow() as uow:
        return await payment_run.run_report(uow, period, principal)


@protected.get("/ledger/balances")
async def read_balances(
    runtime: RuntimeDep, principal: PrincipalDep, by: Literal["programme", "region", "household"] = "programme"
) -> dict[str, Any]:
    """Net benefits paid per programme fund, region or household, from the double-entry ledger."""
    async with runtime.uow() as uow:
        rows = await ledger.balances(uow.session, by, region_clause(principal, LedgerEntry.region))
        accounts = await ledger.accounts(uow.session, region_clause(principal, LedgerEntry.region))
        debit, credit = await ledger.trial_balance(uow.session)
    return {
        "by": by,
        "balances": rows,
        "accounts": accounts,
        "trial_balance": {"debits": str(debit), "credits": str(credit)},
    }


class RecoveryRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["recovered", "waived"]
    note: str = Field(min_length=1, max_length=500, description="the receipt, or why the recovery is waived")


@protected.get("/advances")
async def list_advances(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    status: Annotated[
        Literal["open", "confirmed", "recovery", "recovered", "waived", "not_paid", "cancelled"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Aid paid first, before verification finished, in the caller's region; `status=recovery` is what is
    owed back."""
    async with runtime.uow() as uow:
        return {"advances": await advances.list_advances(uow, principal, status, limit)}


@protected.post("/advances/{determination_id}/recovery")
async def record_recovery(
    determination_id: str, body: RecoveryRecord, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> dict[str, Any]:
    """An officer records an advance owed back as repaid (`recovered`) or waived (written off)."""
    async with runtime.uow() as uow:
        advance = await advances.record_recovery(uow, determination_id, body.outcome, body.note, principal)
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action="advance_recovery",
            resource="determination",
            resource_id=determination_id,
            outcome=body.outcome,
            client=client_of(request),
            purpose=body.note[:200],
        )
        await uow.commit()
    return advance


@protected.get("/reconciliations/{day}")
async def read_reconciliation(day: date, runtime: RuntimeDep, principal: PrincipalDep) -> dict[str, Any]:
    """The report of a night's reconciliation (`doudi reconcile --date`): clean, or each mismatch found."""
    async with runtime.uow() as uow:
        found = await uow.session.get(Reconciliation, day)
    if found is None:
        raise NotFound(f"No reconciliation has run for {day.isoformat()}.")
    return reconciliation.report_of(found)


NDJSON = "application/x-ndjson"


@protected.get(
    "/exports/payments",
    response_class=StreamingResponse,
    responses={200: {"description": "one JSON object per line", "content": {NDJSON: {"schema": {"type": "string"}}}}},
)
async def export_payments(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    period: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
) -> StreamingResponse:
    """Every payment of a month within the caller's region, end to end, for fund supervision (JSON Lines)."""

    async def lines() -> AsyncIterator[bytes]:
        async with runtime.uow() as uow:
            # A read for as long as the client takes to download: on SQLite it must not hold the write lock.
            await uow.session.connection(execution_options={"read_only": True})
            async for line in export.payment_lines(uow, period, region_clause(principal, Entitlement.region)):
                yield json.dumps(line, ensure_ascii=False).encode() + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)
