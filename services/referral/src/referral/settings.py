from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ReferralSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRAL_", env_file=".env", extra="ignore", validate_by_name=True)
    service_name: ClassVar[str] = "referral"
    default_port: ClassVar[int] = 8004

    # An advisor answers a lead within this many working days, or it is escalated.
    outreach_response_days: int = 5
    # How often the worker escalates tasks past their due date.
    escalation_check_seconds: float = 300.0
