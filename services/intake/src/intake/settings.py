from functools import cache
from typing import ClassVar

from pydantic import field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.pii import DEV_HASH_KEYS, DEV_KEYS, PiiKeyError, PiiVault, parse_hash_keys, parse_keys
from shared.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", env_file=".env", extra="ignore", validate_by_name=True)
    service_name: ClassVar[str] = "intake"
    default_port: ClassVar[int] = 8001

    # Resident ID numbers at rest: `kid:base64(32 bytes)[,...]`, the first encrypts, all decrypt (rotation);
    # and the HMAC keys of the lookup hash (the first is written; all are searched while rotating).
    pii_keys: str = DEV_KEYS
    pii_hash_keys: str = DEV_HASH_KEYS

    @field_validator("pii_keys")
    @classmethod
    def _keys(cls, value: str) -> str:
        try:
            parse_keys(value)
        except PiiKeyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("pii_hash_keys")
    @classmethod
    def _hash_keys(cls, value: str) -> str:
        try:
            parse_hash_keys(value)
        except PiiKeyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _no_dev_keys_in_production(self) -> "IntakeSettings":
        if self.env == "production" and (self.pii_keys == DEV_KEYS or self.pii_hash_keys == DEV_HASH_KEYS):
            raise ValueError("INTAKE_PII_KEYS and INTAKE_PII_HASH_KEYS must be set in production")
        return self


@cache
def _vault(keys: str, hash_keys: str, linkage_key: str) -> PiiVault:
    return PiiVault(keys, hash_keys, linkage_key)


def vault_for(settings: ServiceSettings) -> PiiVault:
    assert isinstance(settings, IntakeSettings)
    return _vault(settings.pii_keys, settings.pii_hash_keys, settings.linkage_key)
