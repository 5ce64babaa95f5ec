"""Two-way claiming: charities publish offers; advisors and officers match them to cases in their region."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from referral import charities, offers
from referral.api.routes import NeedRead
from referral.models import Offer, messaging
from shared import audit
from shared.authz import PrincipalDep, authorize, client_of
from shared.contracts.base import Money
from shared.db.uow import UnitOfWork
from shared.idempotency import MAX_KEY_LENGTH, run_once
from shared.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["offers"], dependencies=[Depends(authorize)])
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY_LENGTH)]


class OfferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str = Field(min_length=1, max_length=30, description="one of the charity's categories")
    area: str = Field(pattern=r"^\d{6}$", description="region code the offer covers (310000: all of Shanghai)")
    capacity: int = Field(ge=1, le=10_000, description="how many households it can help")
    amount: Money | None = Field(default=None, description="what each household receives, in yuan, if money")
    description: str = Field(min_length=1, max_length=500)


class OfferRead(BaseModel):
    offer_id: str
    organisation: str
    category: str
    area: str
    capacity: int
    matched: int
    places_left: int
    amount: Money | None
    description: str
    status: str
    created_at: datetime
    updated_at: datetime


class OfferList(BaseModel):
    items: list[OfferRead]


class MatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_id: str = Field(min_length=1, max_length=36)


class MatchRead(BaseModel):
    case_id: str
    offer: OfferRead
    need: NeedRead


def _offer(offer: Offer) -> OfferRead:
    return OfferRead.model_validate(
        {
            **{name: getattr(offer, name) for name in OfferRead.model_fields if name != "places_left"},
            "places_left": max(offer.capacity - offer.matched, 0),
        }
    )


@router.post("/offers", status_code=201, response_model=OfferRead)
async def publish_offer(
    body: OfferCreate,
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """A charity offers help in one of its categories, within its areas (403 outside them). A retry with the
    same `Idempotency-Key` and body returns the offer already made."""

    async def action(uow: UnitOfWork) -> tuple[int, dict[str, object]]:
        offer = await offers.publish_offer(
            uow,
            principal,
            category=body.category,
            area=body.area,
            capacity=body.capacity,
            amount=body.amount,
            description=body.description,
        )
        await audit.record(
            uow.session,
            messaging.audit,
            principal,
            action="create",
            resource="offer",
            resource_id=offer.offer_id,
            client=client_of(request),
        )
        return 201, _offer(offer).model_dump(mode="json")

    status, response, replayed = await run_once(
        runtime.uow,
        messaging.idempotency,
        key=idempotency_key,
        # Keys are the charity's own: two charities choosing the same key do not collide.
        operation=f"POST /v1/offers {charities.organisation_of(principal).org_id}",
        body=body.model_dump(mode="json"),
        action=action,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(response, status_code=status, headers=headers)


@router.get("/offers", response_model=OfferList)
async def list_offers(
    runtime: RuntimeDep,
    principal: PrincipalDep,
    category: Annotated[str | None, Query(max_length=30)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OfferList:
    """Offers whose area overlaps the caller's region, newest first; a charity sees its own."""
    async with runtime.uow() as uow:
        rows = await offers.list_offers(uow, principal, category=category, status=status, limit=limit)
    return OfferList(items=[_offer(o) for o in rows])


@router.post(
    "/offers/{offer_id}/matches",
    status_code=201,
    response_model=MatchRead,
    responses={200: {"model": MatchRead, "description": "The same match again: the one already made"}},
)
async def match_offer(
    offer_id: str, body: MatchCreate, request: Request, runtime: RuntimeDep, principal: PrincipalDep
) -> Response:
    """Match an offer to a case in the caller's region: the case's need in the offer's category is claimed by
    the offering charity (404 for an offer or case outside the region, 409 when the offer is full, does not
    cover the case's area, or the need is already someone's). The same match again answers 200."""
    async with runtime.uow() as uow:
        offer, need, made = await offers.match(uow, offer_id, body.case_id, principal)
        read = MatchRead(
            case_id=body.case_id, offer=_offer(offer), need=NeedRead.model_validate(need, from_attributes=True)
        )
        if made:
            await audit.record(
                uow.session,
                messaging.audit,
                principal,
                action="match",
                resource="offer",
                resource_id=offer_id,
                client=client_of(request),
                purpose=f"case {body.case_id}",
            )
            await uow.commit()
    return JSONResponse(read.model_dump(mode="json"), status_code=201 if made else 200)
