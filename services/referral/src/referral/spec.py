from pathlib import Path

from referral.api.offers import router as offers_router
from referral.api.outreach import router as outreach_router
from referral.api.routes import router
from referral.api.service_referrals import router as service_referrals_router
from referral.handlers import build_handlers
from referral.models import Base, messaging
from referral.outreach import watch_tasks
from referral.settings import ReferralSettings
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="referral",
    settings_cls=ReferralSettings,
    metadata=Base.metadata,
    tables=messaging,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, offers_router, outreach_router, service_referrals_router],
    handlers=build_handlers,
    background=[watch_tasks],
    description="Needs published to charities and offers matched to cases, service referrals, and outreach.",
)
