from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_file=".env", extra="ignore", validate_by_name=True)
    service_name: ClassVar[str] = "intake"
    default_port: ClassVar[int] = 8001
