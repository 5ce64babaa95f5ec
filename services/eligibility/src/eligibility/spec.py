from pathlib import Path

from eligibility.api.routes import router
from eligibility.assessment import retry_verifications
from eligibility.decisions import close_notices
from eligibility.handlers import build_handlers
from eligibility.models import Base, messaging
from eligibility.settings import EligibilitySettings
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="eligibility",
    settings_cls=EligibilitySettings,
    metadata=Base.metadata,
    tables=messaging,
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    handlers=build_handlers,
    background=[close_notices, retry_verifications],
    description="Economic-status verification and eligibility determinations.",
)
