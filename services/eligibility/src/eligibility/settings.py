from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class EligibilitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ELIGIBILITY_", env_file=".env", extra="ignore", validate_by_name=True)
    service_name: ClassVar[str] = "eligibility"
    default_port: ClassVar[int] = 8002

    # How often the worker confirms determinations whose public notice has ended.
    notice_check_seconds: float = 30.0
