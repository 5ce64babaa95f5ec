"""Parameters as data: dated values per region, with references and a `verified` flag, resolved along the
region chain (district → city → province → national)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "parameters"
NATIONAL = "000000"
KINDS = ("money", "decimal", "integer", "bool", "list")


class ParameterError(ValueError):
    """A request names a region, date or parameter the data cannot answer; `field` says which input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Value:
    region: str
    effective: date
    value: Any
    verified: bool
    reference: str


@dataclass(frozen=True)
class Parameter:
    name: str
    description: str
    unit: str
    kind: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Resolved:
    """A parameter's value in force for one region and date, and where it came from."""

    name: str
    value: Any
    region: str
    effective: date | None
    verified: bool
    reference: str
    unit: str
    overridden: bool = False


def region_chain(code: str) -> list[str]:
    chain = [code, code[:4] + "00", code[:2] + "0000", NATIONAL]
    return list(dict.fromkeys(chain))


def _coerce(kind: str, raw: Any, name: str) -> Any:
    try:
        match kind:
            case "money":
                value = Decimal(str(raw))
                if value != value.quantize(Decimal("0.01")) or value < 0:
                    raise ValueError("money must be non-negative with at most two decimals")
                return value.quantize(Decimal("0.01"))
            case "decimal":
                value = Decimal(str(raw))
                if value < 0:
                    raise ValueError("must not be negative")
                return value
            case "integer":
                if isinstance(raw, bool) or int(raw) != Decimal(str(raw)):
                    raise ValueError("must be a whole number")
                return int(raw)
            case "bool":
                if isinstance(raw, bool):
                    return raw
                if str(raw).lower() in ("true", "false"):
                    return str(raw).lower() == "true"
                raise ValueError("must be true or false")
            case "list":
                if not isinstance(raw, list):
                    raise ValueError("must be a list")
                return tuple(str(item) for item in raw)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"{name}: not a valid {kind}") from exc
    raise ValueError(f"{name}: unknown kind {kind}")


@dataclass
class Catalogue:
    parameters: dict[str, Parameter]
    regions: dict[str, str]
    _cache: dict[tuple[str, date], dict[str, Resolved]] = field(default_factory=dict)

    def resolve(self, region: str, as_of: date, overrides: dict[str, Any] | None = None) -> dict[str, Resolved]:
        """Every parameter in force in `region` on `as_of`, with `overrides` applied (what-if questions)."""
        if region not in self.regions:
            raise ParameterError("region", f"unknown region {region!r} (known: {', '.join(sorted(self.regions))})")
        key = (region, as_of)
        base = self._cache.get(key)
        if base is None:
            base = {}
            for name, parameter in self.parameters.items():
                found = self._lookup(parameter, region, as_of)
                if found is not None:
                    base[name] = found
            if "subsistence_allowance.standard" not in base:
                raise ParameterError("as_of", f"no subsistence standard is in force in {region} on {as_of.isoformat()}")
            if len(self._cache) < 10_000:
                self._cache[key] = base
        if not overrides:
            return base
        resolved = dict(base)
        for name, raw in overrides.items():
            parameter = self.parameters.get(name)
            if parameter is None:
                raise ParameterError(f"parameter_overrides.{name}", f"unknown parameter {name!r}")
            try:
                value = _coerce(parameter.kind, raw, name)
            except ValueError as exc:
                raise ParameterError(f"parameter_overrides.{name}", str(exc)) from None
            resolved[name] = Resolved(
                name, value, region, None, False, "parameter_overrides (what-if)", parameter.unit, overridden=True
            )
        return resolved

    @staticmethod
    def _lookup(parameter: Parameter, region: str, as_of: date) -> Resolved | None:
        for level in region_chain(region):
            candidates = [v for v in parameter.values if v.region == level and v.effective <= as_of]
            if candidates:
                best = max(candidates, key=lambda v: v.effective)
                return Resolved(
                    parameter.name,
                    best.value,
                    best.region,
                    best.effective,
                    best.verified,
                    best.reference,
                    parameter.unit,
                )
        return None


def load_catalogue(directory: Path = DATA) -> Catalogue:
    """Read and validate every parameter file; a malformed file fails loudly at start, naming the entry."""
    regions_file = tomllib.loads((directory / "regions.toml").read_text(encoding="utf-8"))
    regions = {str(code): str(name) for code, name in regions_file["regions"].items()}
    parameters: dict[str, Parameter] = {}
    for path in sorted(directory.glob("*.toml")):
        if path.name == "regions.toml":
            continue
        family = path.stem
        for short, spec in tomllib.loads(path.read_text(encoding="utf-8")).items():
            name = f"{family}.{short}"
            where = f"{path.name} [{short}]"
            kind = spec.get("kind")
            if kind not in KINDS:
                raise ValueError(f"{where}: kind must be one of {KINDS}")
            values = []
            for entry in spec.get("values", []):
                region = str(entry["region"])
                if region not in regions:
                    raise ValueError(f"{where}: region {region} is not in regions.toml")
                if not isinstance(entry["from"], date):
                    raise ValueError(f"{where}: 'from' must be a date")
                if not entry.get("reference"):
                    raise ValueError(f"{where}: every value needs a reference")
                values.append(
                    Value(
                        region,
                        entry["from"],
                        _coerce(kind, entry["value"], where),
                        bool(entry["verified"]),
                        str(entry["reference"]),
                    )
                )
            if not values:
                raise ValueError(f"{where}: no values")
            parameters[name] = Parameter(name, str(spec["description"]), str(spec["unit"]), kind, tuple(values))
    return Catalogue(parameters, regions)


@cache
def catalogue() -> Catalogue:
    return load_catalogue()
