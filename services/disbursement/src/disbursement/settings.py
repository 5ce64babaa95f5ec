from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import DEV_SECRET, ServiceSettings


class DisbursementSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="DISBURSEMENT_", env_file=".env", extra="ignore", validate_by_name=True
    )
    service_name: ClassVar[str] = "disbursement"
    default_port: ClassVar[int] = 8003

    bank_url: str = "http://127.0.0.1:8005"
    # Where the bank calls back; must reach this service's API.
    callback_url: str = ""
    # Where the bank sends a whole batch's results in one callback (回盘); "none": one callback per order.
    batch_callback_url: str = ""
    bank_callback_secret: str = DEV_SECRET
    bank_timeout_seconds: float = 5.0
    # Orders per batch sent to the bank (the sandbox bank takes up to 1,000; a real gateway states its own
    # limit). The full thousand by default: per order, a batch of 1,000 cost the month's pipeline a tenth less
    # CPU than one of 500 (docs/benchmarks.md, payment run).
    submit_batch_size: int = Field(default=1000, ge=1, le=1000)
    submit_max_attempts: int = 8
    # How often the worker recounts payments by status for /metrics.
    metrics_every_seconds: float = 10.0
    # Payments submitted this long ago without a callback are asked about; the question is repeated this often.
    status_query_after_seconds: float = 300.0
    status_query_every_seconds: float = 60.0

    @model_validator(mode="after")
    def _production_secret(self) -> "DisbursementSettings":
        if self.env == "production" and self.bank_callback_secret == DEV_SECRET:
            raise ValueError("bank_callback_secret must be set in production (the development secret is public)")
        if not self.callback_url:
            self.callback_url = f"http://{self.host}:{self.port}/v1/bank/callbacks"
        if not self.batch_callback_url:
            self.batch_callback_url = f"http://{self.host}:{self.port}/v1/bank/batch-callbacks"
        return self
