"""Verification data sources: where the means test (经济状况核对) learns what a household really has.

A source is asked about the household's members by their pseudonymous person keys (shared.pii.person_key)
and answers, per person it knows, the monthly incomes by kind and the assets it holds on record, with the
date its data is as of. Two kinds:

- `RegistrySource`: records from a file (TOML, keyed by ID number, hashed to person keys at load), for
  development and tests, and for a region that receives the departments' data as files.
- `HttpSource`: the verification centre over HTTP: `POST <url>` with `{"person_keys": [...]}` answers
  `{"data_as_of": "YYYY-MM-DD", "people": {key: {"incomes": {"wage": "5200.00"}, "monetary_assets": "...",
  "private_cars": 0, "non_residential_properties": 0}}}`. A timeout per request, bounded retries with
  backoff (tenacity), a circuit breaker, and answers cached for a configurable time (cachetools).

A source that cannot answer raises `SourceUnavailable`: the case waits with that reason; it is never
approved or denied for want of an answer.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol

import httpx
from cachetools import TTLCache
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shared.contracts.intake import IncomeKind
from shared.pii import person_key

INCOME_KINDS: frozenset[str] = frozenset(IncomeKind.__args__)  # type: ignore[attr-defined]
DEV_REGISTRY = Path(__file__).parent / "verification_registry.toml"


class SourceUnavailable(Exception):
    """The source could not answer now (down, timing out, refusing, or answering nonsense)."""


@dataclass(frozen=True)
class PersonRecord:
    incomes: dict[str, Decimal] = field(default_factory=dict)  # income kind → monthly amount
    monetary_assets: Decimal | None = None
    private_cars: int | None = None
    non_residential_properties: int | None = None


@dataclass(frozen=True)
class SourceAnswer:
    source: str
    data_as_of: date | None
    people: dict[str, PersonRecord]  # person key → what the source holds; absent: nothing on record


class Source(Protocol):
    name: str

    async def lookup(self, person_keys: Sequence[str]) -> SourceAnswer: ...


def _money(value: Any, where: str) -> Decimal:
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        raise ValueError(f"{where}: {value!r} is not an amount") from None
    if amount < 0:
        raise ValueError(f"{where}: {value!r} is negative")
    return amount


def parse_record(data: dict[str, Any], where: str) -> PersonRecord:
    incomes = data.get("incomes") or {}
    if not isinstance(incomes, dict):
        raise ValueError(f"{where}: incomes must map an income kind to a monthly amount")
    unknown = set(incomes) - INCOME_KINDS
    if unknown:
        raise ValueError(f"{where}: unknown income kinds {sorted(unknown)}")

    def count(name: str) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{where}: {name} must be a whole number")
        return value

    assets = data.get("monetary_assets")
    return PersonRecord(
        incomes={kind: _money(amount, f"{where}.{kind}") for kind, amount in incomes.items()},
        monetary_assets=None if assets is None else _money(assets, f"{where}.monetary_assets"),
        private_cars=count("private_cars"),
        non_residential_properties=count("non_residential_properties"),
    )


class RegistrySource:
    """Records loaded from a TOML file: `data_as_of = YYYY-MM-DD` and `[[person]]` tables with `id_number`,
    `incomes = {wage = "5200.00"}`, `monetary_assets`, `private_cars`, `non_residential_properties`."""

    def __init__(self, path: Path, linkage_key: str, name: str = "registry") -> None:
        self.name = name
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"verification registry {path}: {exc}") from None
        as_of = data.get("data_as_of")
        self.data_as_of = as_of if isinstance(as_of, date) else None
        self.people: dict[str, PersonRecord] = {}
        for index, entry in enumerate(data.get("person", [])):
            where = f"{path.name} person {index + 1}"
            if "id_number" not in entry:
                raise ValueError(f"{where}: no id_number")
            self.people[person_key(str(entry["id_number"]), linkage_key)] = parse_record(entry, where)

    async def lookup(self, person_keys: Sequence[str]) -> SourceAnswer:
        found = {key: self.people[key] for key in person_keys if key in self.people}
        return SourceAnswer(self.name, self.data_as_of, found)


class CircuitBreaker:
    """Closed → open after `failures` failures in a row (calls then fail at once) → half-open after
    `reset_seconds` (one trial call: a success closes it, a failure opens it again). Written here because
    pybreaker, the well-kept one, runs async code only under Tornado."""

    def __init__(self, failures: int, reset_seconds: float, clock: Any = time.monotonic) -> None:
        self.threshold, self.reset_seconds, self._clock = failures, reset_seconds, clock
        self.failures = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self.opened_at >= self.reset_seconds else "open"

    def allow(self) -> bool:
        return self.state != "open"

    def succeeded(self) -> None:
        self.failures, self.opened_at = 0, None

    def failed(self) -> None:
        self.failures += 1
        if self.state == "half-open" or self.failures >= self.threshold:
            self.opened_at = self._clock()


class _Retryable(Exception):
    pass


class HttpSource:
    def __init__(
        self,
        url: str,
        *,
        name: str = "verification_centre",
        timeout: float = 2.0,
        attempts: int = 3,
        backoff: float = 0.2,
        cache_seconds: float = 300.0,
        breaker: CircuitBreaker | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name, self.url, self.attempts, self.backoff = name, url, attempts, backoff
        self.breaker = breaker or CircuitBreaker(failures=5, reset_seconds=30.0)
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._cache: TTLCache[tuple[str, ...], SourceAnswer] | None = (
            TTLCache(maxsize=10_000, ttl=cache_seconds) if cache_seconds > 0 else None
        )

    async def lookup(self, person_keys: Sequence[str]) -> SourceAnswer:
        key = tuple(sorted(person_keys))
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        if not self.breaker.allow():
            raise SourceUnavailable(f"{self.name}: circuit open after {self.breaker.failures} failures in a row")
        try:
            answer = await self._ask(list(key))
        except SourceUnavailable:
            self.breaker.failed()
            raise
        self.breaker.succeeded()
        if self._cache is not None:
            self._cache[key] = answer
        return answer

    async def _ask(self, person_keys: list[str]) -> SourceAnswer:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff, max=5),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    response = await self._post(person_keys)
        except _Retryable as exc:
            raise SourceUnavailable(f"{self.name}: {exc} (after {self.attempts} attempts)") from None
        if response.status_code != 200:
            raise SourceUnavailable(f"{self.name}: answered {response.status_code}")
        try:
            body = response.json()
            as_of = body.get("data_as_of")
            people = {
                str(key): parse_record(record, f"{self.name} {key[:8]}")
                for key, record in (body.get("people") or {}).items()
            }
            return SourceAnswer(self.name, date.fromisoformat(as_of) if as_of else None, people)
        except (ValueError, AttributeError, TypeError) as exc:
            raise SourceUnavailable(f"{self.name}: unreadable answer ({exc})") from None

    async def _post(self, person_keys: list[str]) -> httpx.Response:
        try:
            response = await self._client.post(self.url, json={"person_keys": person_keys})
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"unreachable ({type(exc).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(f"answered {response.status_code}")
        return response

    async def aclose(self) -> None:
        await self._client.aclose()


def sources_from_settings(settings: Any) -> list[Source]:
    """The sources the settings name, in order (`ELIGIBILITY_VERIFICATION_SOURCES`)."""
    built: list[Source] = []
    for name in settings.verification_sources:
        if name == "registry":
            built.append(RegistrySource(settings.verification_registry or DEV_REGISTRY, settings.linkage_key))
        elif name == "http":
            built.append(
                HttpSource(
                    settings.verification_url,
                    timeout=settings.verification_timeout_seconds,
                    attempts=settings.verification_attempts,
                    cache_seconds=settings.verification_cache_seconds,
                    breaker=CircuitBreaker(
                        settings.verification_breaker_failures, settings.verification_breaker_reset_seconds
                    ),
                )
            )
    return built


# By the settings object's id, with the object itself kept so that id is never reused for another one.
_BUILT: dict[int, tuple[Any, list[Source]]] = {}


def sources_for(settings: Any) -> list[Source]:
    """One set of sources per settings object, shared by the consumer and the retry loop (one circuit
    breaker and one cache per process)."""
    if id(settings) not in _BUILT:
        _BUILT[id(settings)] = (settings, sources_from_settings(settings))
    return _BUILT[id(settings)][1]
