from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings


class EligibilitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ELIGIBILITY_", env_file=".env", extra="ignore", validate_by_name=True)
    service_name: ClassVar[str] = "eligibility"
    default_port: ClassVar[int] = 8002

    # How often the worker confirms determinations whose public notice has ended.
    notice_check_seconds: float = 30.0

    # The means test's data sources, asked in this order (comma-separated): `registry` (records from a
    # file, ELIGIBILITY_VERIFICATION_REGISTRY, by default the development records that ship with the
    # service) and `http` (the verification centre at ELIGIBILITY_VERIFICATION_URL).
    verification_sources: Annotated[list[Literal["registry", "http"]], NoDecode] = ["registry"]
    verification_registry: Path | None = None
    verification_url: str = ""
    verification_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    verification_attempts: int = Field(default=3, ge=1, le=10)
    verification_cache_seconds: float = Field(default=300.0, ge=0)
    verification_breaker_failures: int = Field(default=5, ge=1)
    verification_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # A case whose sources could not answer is tried again after this, doubling, at most an hour.
    verification_retry_seconds: float = Field(default=30.0, gt=0)

    @field_validator("verification_sources", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _http_needs_a_url(self) -> "EligibilitySettings":
        if "http" in self.verification_sources and not self.verification_url.startswith(("http://", "https://")):
            raise ValueError("ELIGIBILITY_VERIFICATION_URL must be an http(s) URL when the http source is on")
        if self.verification_registry is not None and not self.verification_registry.is_file():
            raise ValueError(f"ELIGIBILITY_VERIFICATION_REGISTRY: no file {self.verification_registry}")
        return self
