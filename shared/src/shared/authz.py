"""Who may do what: the one authorisation matrix of the whole system, every role × every endpoint.

An endpoint missing from the matrix is refused to everyone (deny by default); a test checks that every route
of every service is listed. Region scoping (what a role may see within its endpoints) is applied by each
service's queries, from `Principal.scope`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy import false, true

from shared.auth import Principal
from shared.errors import DomainError

EVERYONE = frozenset({"advisor", "window", "officer", "charity", "reconciler", "admin"})
CASEWORK = frozenset({"advisor", "window", "officer", "admin"})

MATRIX: dict[tuple[str, str, str], frozenset[str]] = {
    # intake: advisors and the window file and follow cases; officers read them to decide.
    ("intake", "POST", "/v1/applications"): frozenset({"advisor", "window", "admin"}),
    ("intake", "GET", "/v1/cases"): CASEWORK,
    ("intake", "GET", "/v1/cases/{case_id}"): CASEWORK,
    ("intake", "GET", "/v1/cases/{case_id}/timeline"): CASEWORK,
    ("intake", "POST", "/v1/cases/{case_id}/withdrawal"): frozenset({"advisor", "window", "admin"}),
    # Reviews are the street office's: its advisors and officers.
    ("intake", "POST", "/v1/cases/{case_id}/reviews"): frozenset({"advisor", "officer"}),
    # A household's consent to share its contact details with the charity holding its need is withdrawn where
    # cases are filed; the charity holding the need reads the details, only with that consent (intake checks).
    ("intake", "POST", "/v1/cases/{case_id}/contact-consent/withdrawal"): frozenset({"advisor", "window", "admin"}),
    ("intake", "GET", "/v1/needs/{need_id}/contact"): frozenset({"charity"}),
    # Other departments' systems report signals (their token names the source); admins may too.
    ("intake", "POST", "/v1/signals"): frozenset({"department", "admin"}),
    # eligibility: what-if evaluations for casework; the parameters in force are public information.
    ("eligibility", "POST", "/v1/evaluations"): CASEWORK,
    ("eligibility", "GET", "/v1/parameters"): EVERYONE,
    ("eligibility", "GET", "/v1/determinations"): frozenset({"advisor", "officer", "admin"}),
    ("eligibility", "GET", "/v1/determinations/{determination_id}"): frozenset({"advisor", "officer", "admin"}),
    # Only an officer decides (admins administer, they do not decide cases); objections arrive at the window,
    # through the advisor or at the office.
    ("eligibility", "POST", "/v1/determinations/{determination_id}/approve"): frozenset({"officer"}),
    ("eligibility", "POST", "/v1/determinations/{determination_id}/reject"): frozenset({"officer"}),
    ("eligibility", "POST", "/v1/determinations/{determination_id}/objections"): frozenset(
        {"advisor", "window", "officer"}
    ),
    # disbursement: payments are read by officers and the reconciliation jobs.
    ("disbursement", "GET", "/v1/payments/{payment_id}"): frozenset({"officer", "reconciler", "admin"}),
    ("disbursement", "POST", "/v1/payment-runs"): frozenset({"reconciler", "admin"}),
    ("disbursement", "GET", "/v1/payment-runs/{period}"): frozenset({"officer", "reconciler", "admin"}),
    ("disbursement", "GET", "/v1/ledger/balances"): frozenset({"officer", "reconciler", "admin"}),
    ("disbursement", "GET", "/v1/reconciliations/{day}"): frozenset({"officer", "reconciler", "admin"}),
    ("disbursement", "GET", "/v1/exports/payments"): frozenset({"officer", "reconciler", "admin"}),
    # Aid paid first: an officer decides whether what verification did not support is recovered or waived.
    ("disbursement", "GET", "/v1/advances"): frozenset({"officer", "reconciler", "admin"}),
    ("disbursement", "POST", "/v1/advances/{determination_id}/recovery"): frozenset({"officer"}),
    # referral: charities see masked needs; advisors and officers follow them.
    ("referral", "GET", "/v1/needs"): frozenset({"charity", "advisor", "officer", "admin"}),
    ("referral", "POST", "/v1/needs/{need_id}/claim"): frozenset({"charity"}),
    ("referral", "POST", "/v1/needs/{need_id}/delivery"): frozenset({"charity"}),
    # Two-way claiming: a charity offers help; advisors and officers match it to their region's cases.
    ("referral", "GET", "/v1/offers"): frozenset({"charity", "advisor", "officer", "admin"}),
    ("referral", "POST", "/v1/offers"): frozenset({"charity"}),
    ("referral", "POST", "/v1/offers/{offer_id}/matches"): frozenset({"advisor", "officer"}),
    # Service referrals: casework follows them; the provider (an organisation of the register) records each step.
    ("referral", "GET", "/v1/service-referrals"): frozenset({"charity", "advisor", "officer", "admin"}),
    ("referral", "POST", "/v1/service-referrals/{referral_id}/outcome"): frozenset({"charity"}),
    # outreach: advisors visit; officers follow how discovery is doing.
    ("referral", "GET", "/v1/outreach-tasks"): frozenset({"advisor", "officer", "admin"}),
    ("referral", "POST", "/v1/outreach-tasks/{task_id}/outcome"): frozenset({"advisor"}),
    ("referral", "GET", "/v1/discovery/summary"): frozenset({"advisor", "officer", "admin"}),
}

# Reached without a bearer token: probes, metrics, and machine callbacks that prove themselves otherwise.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
PUBLIC_PREFIXES = ("/metrics",)
# HMAC-signed by the bank (disbursement verifies it)
SIGNED_PATHS = frozenset({"/v1/bank/callbacks", "/v1/bank/batch-callbacks"})
DEVELOPMENT_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})


class Forbidden(DomainError):
    status_code = 403
    title = "Forbidden"


def is_public(path: str, development: bool) -> bool:
    return (
        path in PUBLIC_PATHS
        or path.startswith(PUBLIC_PREFIXES)
        or path in SIGNED_PATHS
        or (development and path in DEVELOPMENT_PATHS)
    )


def current_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # the middleware lets no unauthenticated request reach a protected route
        raise Forbidden("No authenticated caller.")
    return principal


async def authorize(request: Request) -> Principal:
    """Router dependency: the caller's role must be allowed on this endpoint by the matrix. (Async only so
    that FastAPI calls it in the request's task: a plain function it would send to a worker thread.)"""
    principal = current_principal(request)
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    allowed = MATRIX.get((request.app.state.service_name, request.method, path), frozenset())
    if principal.role not in allowed:
        raise Forbidden(f"The role {principal.role!r} may not {request.method} {path}.")
    return principal


PrincipalDep = Annotated[Principal, Depends(authorize)]


def region_clause(principal: Principal, region: Any, street: Any = None, community: Any = None) -> Any:
    """A WHERE clause limiting rows to the caller's area: a district-or-wider token matches the region code
    by prefix; a street token matches the street; a community token the community. Data without the finer
    code is outside a finer token's scope."""
    scope = principal.scope
    if len(scope) <= 6:
        return region.startswith(scope) if scope else true()
    if len(scope) <= 9:
        return street == scope if street is not None else false()
    return community == scope if community is not None else false()


def client_of(request: Request) -> str:
    """Where a request came from, for the audit log (the peer address; a proxy's header is not trusted)."""
    return f"{request.client.host}:{request.client.port}" if request.client else ""
