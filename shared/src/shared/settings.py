"""Settings: environment variables (and an optional `.env`), validated once at start.

Settings every service shares are read from `DOUDI_*` variables; a service's own settings from
`<SERVICE>_*` (for example `INTAKE_DATABASE_URL`). A bad value stops the start with one line that names
the variable (`SettingsError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.pii import DEV_LINKAGE_KEY, PiiKeyError, parse_hash_keys

DEV_SECRET = "doudi-development-only-secret"


def common(name: str, **kwargs: Any) -> Any:
    """A field read from the shared `DOUDI_<NAME>` variable rather than the service's prefix."""
    return Field(validation_alias=AliasChoices(f"DOUDI_{name}", name.lower()), **kwargs)


class SettingsError(Exception):
    """A setting failed validation; the message is one line naming the variable."""


class ServiceSettings(BaseSettings):
    """The settings every service has. Subclasses set `service_name` and `env_prefix`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_by_name=True)

    service_name: ClassVar[str] = "service"
    default_port: ClassVar[int] = 8000

    env: Literal["development", "test", "production"] = common("ENV", default="development")
    data_dir: Path = common("DATA_DIR", default=Path("data"))
    kafka_bootstrap_servers: str = common("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:9092")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = common("LOG_LEVEL", default="INFO")
    log_json: bool = common("LOG_JSON", default=True)

    # Authentication: the identity provider's published keys in production; without a JWKS URL, outside
    # production, tokens signed by the development key under the data folder (`doudi token`) are trusted.
    auth_jwks_url: str = common("AUTH_JWKS_URL", default="")
    auth_issuer: str = common("AUTH_ISSUER", default="doudi-dev")
    auth_audience: str = common("AUTH_AUDIENCE", default="doudi")

    # The key of the pseudonymous person keys events carry instead of ID numbers (shared.pii.person_key);
    # intake and the verification centre hold it. Base64, at least 32 bytes.
    linkage_key: str = common("LINKAGE_KEY", default=DEV_LINKAGE_KEY)

    # Abuse limits.
    max_body_bytes: int = common("MAX_BODY_BYTES", default=1_048_576, ge=1024)
    rate_limit_per_minute: int = common("RATE_LIMIT_PER_MINUTE", default=6000, ge=1)
    rate_limit_burst: int = common("RATE_LIMIT_BURST", default=600, ge=1)
    # Where the buckets live: in each process (one process, or limits per replica), or in the service's
    # database, shared by all its API replicas (production).
    rate_limit_store: Literal["process", "database"] = common("RATE_LIMIT_STORE", default="process")

    # The service's own database and port.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)

    # Outbox relay.
    relay_batch_size: int = common("RELAY_BATCH_SIZE", default=500, ge=1, le=10_000)
    relay_idle_seconds: float = common("RELAY_IDLE_SECONDS", default=0.5, gt=0, le=60)
    relay_prune_after_days: int = common("RELAY_PRUNE_AFTER_DAYS", default=7, ge=1)

    # Consumer runner.
    consumer_batch_size: int = common("CONSUMER_BATCH_SIZE", default=500, ge=1, le=10_000)
    consumer_max_attempts: int = common("CONSUMER_MAX_ATTEMPTS", default=5, ge=1, le=50)
    consumer_backoff_seconds: float = common("CONSUMER_BACKOFF_SECONDS", default=0.2, ge=0, le=60)
    consumer_stall_seconds: float = common("CONSUMER_STALL_SECONDS", default=60.0, gt=0)

    # A worker or relay process (no API) serves /healthz, /readyz and /metrics here; 0: not at all.
    metrics_port: int = common("METRICS_PORT", default=0, ge=0, le=65535)

    # OpenTelemetry traces: off by default; `otlp` sends them over OTLP/HTTP, `console` prints them.
    otel_exporter: Literal["none", "otlp", "console"] = common("OTEL_EXPORTER", default="none")
    otel_endpoint: str = common("OTEL_ENDPOINT", default="http://127.0.0.1:4318/v1/traces")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_is_host_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("linkage_key")
    @classmethod
    def _linkage_key_is_a_key(cls, value: str) -> str:
        try:
            parse_hash_keys(value)
        except PiiKeyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_async(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> ServiceSettings:
        if self.env == "production" and not self.auth_jwks_url:
            raise ValueError("DOUDI_AUTH_JWKS_URL must be set in production (the development key is never trusted)")
        if not self.database_url:
            if self.env == "production":
                raise ValueError("database_url must be set in production")
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / (self.service_name + '.db')}"
        if self.env == "production" and self.linkage_key == DEV_LINKAGE_KEY:
            raise ValueError("DOUDI_LINKAGE_KEY must be set in production")
        if not self.port:
            self.port = self.default_port
        return self

    @property
    def source(self) -> str:
        """The CloudEvents `source` of the events this service emits."""
        return f"/doudi/{self.service_name}"


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or raise `SettingsError` with one line naming the offending variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise SettingsError(f"invalid setting {_variable_name(cls, error['loc'])}: {error['msg']}") from None


def _variable_name(cls: type[BaseSettings], loc: tuple[Any, ...]) -> str:
    if not loc:
        return cls.__name__
    name = str(loc[0])
    if name.isupper():
        return name
    field = cls.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        return str(field.validation_alias.choices[0])
    prefix = cls.model_config.get("env_prefix", "")
    return f"{prefix}{name}".upper()
