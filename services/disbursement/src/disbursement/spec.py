from pathlib import Path

from disbursement.api.routes import protected, router
from disbursement.bank import submit_payments
from disbursement.handlers import build_handlers
from disbursement.metrics import count_payments
from disbursement.models import Base, messaging
from disbursement.settings import DisbursementSettings
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="disbursement",
    settings_cls=DisbursementSettings,
    metadata=Base.metadata,
    tables=messaging,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, protected],
    handlers=build_handlers,
    background=[submit_payments, count_payments],
    description="Entitlements, payments made exactly once, and the bank.",
)
