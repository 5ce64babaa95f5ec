"""Who is calling: bearer JWTs verified against the identity provider's published keys (JWKS) in production,
or against the local development key that `doudi up` and `doudi token` use. Issuer, audience and expiry are
checked; the token carries `sub`, `role` and `region` (a district, street or community code)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# `department`: another department's system sending signals (its token's subject is its registered source).
ROLES = ("advisor", "window", "officer", "charity", "reconciler", "admin", "department")
ALGORITHMS = ["RS256", "ES256"]
DEV_PRIVATE = "dev-jwt-es256-private.pem"
DEV_PUBLIC = "dev-jwt-es256-public.pem"
VERIFIED_TOKENS = 4096
REVERIFY_SECONDS = 300


class AuthError(Exception):
    """The request carries no usable credentials (401)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    role: str
    region: str

    @property
    def scope(self) -> str:
        """The code prefix this caller may see: 310000 → "31", 310100 → "3101", a street or community as is,
        the national code 000000 → everything."""
        return scope_prefix(self.region)

    def covers(self, code: str | None) -> bool:
        return code is not None and code.startswith(self.scope)


def scope_prefix(region: str) -> str:
    if set(region) == {"0"}:
        return ""
    code = region
    while len(code) > 2 and len(code) <= 6 and code.endswith("00"):
        code = code[:-2]
    return code


def dev_key_dir(data_dir: Path) -> Path:
    return data_dir / "keys"


def ensure_dev_keypair(data_dir: Path) -> tuple[Path, Path]:
    """The development signing key (ES256), made once per data folder. Never trusted in production."""
    directory = dev_key_dir(data_dir)
    private, public = directory / DEV_PRIVATE, directory / DEV_PUBLIC
    if not private.exists() or not public.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        staging = directory / f".{os.getpid()}.tmp"
        staging.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        staging.chmod(0o600)
        os.replace(staging, private)
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private, public


def mint_dev_token(
    data_dir: Path, *, role: str, region: str, subject: str, issuer: str, audience: str, ttl_seconds: int = 8 * 3600
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    private, _public = ensure_dev_keypair(data_dir)
    now = int(time.time())
    claims = {
        "sub": subject,
        "role": role,
        "region": region,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, private.read_bytes(), algorithm="ES256")


class Authenticator:
    def __init__(self, *, jwks_url: str, issuer: str, audience: str, dev_public_key: bytes | None) -> None:
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None
        # Parsed once: PyJWT would otherwise parse the PEM again for every request it verifies.
        self._dev_key = serialization.load_pem_public_key(dev_public_key) if dev_public_key else None
        # Tokens already verified, until they expire: a caller sends the same token with every request, and
        # checking its signature again each time was most of authentication's cost. Bounded; oldest first out.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError("a bearer token is required")
        token = authorization[7:].strip()
        known = self._verified.get(token)
        if known is not None and known[1] > time.time():
            return known[0]
        principal, expires = await self._verify(token)
        # At most five minutes, as long as the published keys are cached: a key withdrawn from the JWKS stops
        # its tokens within that, as it did when every request was verified.
        self._verified[token] = (principal, min(expires, time.time() + REVERIFY_SECONDS))
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            if self._jwks is not None:
                # PyJWKClient fetches over blocking HTTP (cached afterwards): keep it off the event loop.
                key: Any = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            elif self._dev_key is not None:
                key = self._dev_key
            else:
                raise AuthError("no key to verify tokens with")
            claims = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"the signing key could not be found: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        role, region = claims.get("role"), str(claims.get("region", ""))
        if role not in ROLES:
            raise AuthError("the token's role is not one of " + ", ".join(ROLES))
        if not region.isdigit() or len(region) not in (6, 9, 12):
            raise AuthError("the token's region must be a 6-, 9- or 12-digit code")
        return Principal(subject=str(claims["sub"]), role=role, region=region), float(claims["exp"])
