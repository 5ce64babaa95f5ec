from decimal import Decimal
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class EligibilitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ELIGIBILITY_", env_file=".env", extra="ignore", validate_by_name=True)
    service_name: ClassVar[str] = "eligibility"
    default_port: ClassVar[int] = 8002

    # The walking skeleton's flat standard (Shanghai's 1,330 yuan from 2021-07-01). The dated, per-region
    # parameters of the rules engine replace it.
    placeholder_standard: Decimal = Field(default=Decimal("1330.00"), gt=0, decimal_places=2)
