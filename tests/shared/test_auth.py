"""Token verification: the development key and a real JWKS endpoint (the production path)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth import Authenticator, AuthError, Principal, ensure_dev_keypair, mint_dev_token, scope_prefix


def dev_authenticator(directory: Path) -> Authenticator:
    _private, public = ensure_dev_keypair(directory)
    return Authenticator(jwks_url="", issuer="doudi-dev", audience="doudi", dev_public_key=public.read_bytes())


def count_verifications(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every signature check from now on (one entry per `jwt.decode`)."""
    calls: list[object] = []
    decode = jwt.decode

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0] if args else None)
        return decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "a1",
        "role": "advisor",
        "region": "310115",
        "iss": "doudi-dev",
        "aud": "doudi",
        "iat": now,
        "exp": now + 60,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


class TestDevelopmentTokens:
    async def test_a_minted_token_names_its_caller(self, tmp_path: Path) -> None:
        token = mint_dev_token(
            tmp_path, role="officer", region="310115001", subject="li", issuer="doudi-dev", audience="doudi"
        )
        principal = await dev_authenticator(tmp_path).authenticate(f"Bearer {token}")
        assert principal == Principal(subject="li", role="officer", region="310115001")

    @pytest.mark.parametrize(
        "changes",
        [
            {"exp": int(time.time()) - 10},
            {"iss": "someone-else"},
            {"aud": "another-system"},
            {"role": "superuser"},
            {"region": "31"},
            {"sub": None},
            {"exp": None},
        ],
        ids=["expired", "issuer", "audience", "unknown-role", "bad-region", "no-subject", "no-expiry"],
    )
    async def test_refuses_tokens_that_break_a_rule(self, tmp_path: Path, changes: dict[str, object]) -> None:
        private, _public = ensure_dev_keypair(tmp_path)
        token = jwt.encode(claims(**changes), private.read_bytes(), algorithm="ES256")
        with pytest.raises(AuthError):
            await dev_authenticator(tmp_path).authenticate(f"Bearer {token}")

    async def test_a_token_is_verified_once_and_refused_once_it_expires(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        private, _public = ensure_dev_keypair(tmp_path)
        authenticator = dev_authenticator(tmp_path)
        expires = int(time.time()) + 2  # at least a second from now
        token = jwt.encode(claims(exp=expires), private.read_bytes(), algorithm="ES256")
        verified = count_verifications(monkeypatch)
        for _ in range(3):
            assert (await authenticator.authenticate(f"Bearer {token}")).subject == "a1"
        assert len(verified) == 1  # the same token again: its signature is not checked again
        await asyncio.sleep(expires - time.time() + 0.05)
        with pytest.raises(AuthError, match="expired"):  # past its expiry it is verified again, and refused
            await authenticator.authenticate(f"Bearer {token}")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(AuthError):  # a different string is never taken from what was verified
            await authenticator.authenticate(f"Bearer {forged}")

    async def test_a_remembered_token_is_verified_again_after_five_minutes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """As long as the published keys are cached: a key withdrawn from the JWKS stops its tokens in time."""
        private, _public = ensure_dev_keypair(tmp_path)
        authenticator = dev_authenticator(tmp_path)
        token = jwt.encode(claims(exp=int(time.time()) + 3600), private.read_bytes(), algorithm="ES256")
        verified = count_verifications(monkeypatch)
        await authenticator.authenticate(f"Bearer {token}")
        await authenticator.authenticate(f"Bearer {token}")
        assert len(verified) == 1
        later = time.time() + 301
        monkeypatch.setattr(time, "time", lambda: later)  # PyJWT reads the clock through datetime, not this
        await authenticator.authenticate(f"Bearer {token}")
        assert len(verified) == 2

    async def test_refuses_a_token_signed_by_another_key(self, tmp_path: Path) -> None:
        other, _ = ensure_dev_keypair(tmp_path / "other")
        token = jwt.encode(claims(), other.read_bytes(), algorithm="ES256")
        with pytest.raises(AuthError):
            await dev_authenticator(tmp_path).authenticate(f"Bearer {token}")

    async def test_refuses_unsigned_and_symmetric_tokens(self, tmp_path: Path) -> None:
        authenticator = dev_authenticator(tmp_path)
        unsigned = jwt.encode(claims(), None, algorithm="none")
        symmetric = jwt.encode(claims(), "a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256")
        for token in (unsigned, symmetric, "not.a.token", ""):
            with pytest.raises(AuthError):
                await authenticator.authenticate(f"Bearer {token}")
        with pytest.raises(AuthError):
            await authenticator.authenticate(None)


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    """A stand-in identity provider on loopback that publishes one RS256 key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", key
    server.shutdown()


class TestIdentityProviderTokens:
    async def test_verifies_against_the_published_keys(self, jwks_server: tuple[str, rsa.RSAPrivateKey]) -> None:
        url, key = jwks_server
        authenticator = Authenticator(jwks_url=url, issuer="https://idp", audience="doudi", dev_public_key=None)
        good = jwt.encode(claims(iss="https://idp"), key, algorithm="RS256", headers={"kid": "k1"})
        assert (await authenticator.authenticate(f"Bearer {good}")).subject == "a1"
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(claims(iss="https://idp"), stranger, algorithm="RS256", headers={"kid": "k1"})
        with pytest.raises(AuthError):
            await authenticator.authenticate(f"Bearer {forged}")


@pytest.mark.parametrize(
    ("region", "prefix"),
    [("310000", "31"), ("310100", "3101"), ("310115", "310115"), ("310115001", "310115001"), ("000000", "")],
)
def test_a_region_scopes_by_its_significant_digits(region: str, prefix: str) -> None:
    assert scope_prefix(region) == prefix
