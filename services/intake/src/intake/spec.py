from pathlib import Path

from intake.api.consent import router as consent_router
from intake.api.routes import router
from intake.api.signals import router as signals_router
from intake.handlers import HANDLERS
from intake.models import Base, messaging
from intake.settings import IntakeSettings
from shared.service import ServiceSpec

SPEC = ServiceSpec(
    name="intake",
    settings_cls=IntakeSettings,
    metadata=Base.metadata,
    tables=messaging,
    migrations=Path(__file__).parent / "migrations",
    routers=[router, signals_router, consent_router],
    handlers=lambda _settings: HANDLERS,
    description="Households, applications and cases; the case read model and timeline.",
)
