"""Personal data at rest: values encrypted with AES-256-GCM under a key id (so keys rotate: new writes use the
first key, every listed key still decrypts), plus a keyed hash (HMAC-SHA256) so a value can be found without
being readable. Keys come from settings; the development keys are refused in production."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEV_KEYS = "dev1:" + base64.b64encode(hashlib.sha256(b"doudi-development-pii-key").digest()).decode()
DEV_HASH_KEYS = base64.b64encode(hashlib.sha256(b"doudi-development-pii-hash-key").digest()).decode()
DEV_LINKAGE_KEY = base64.b64encode(hashlib.sha256(b"doudi-development-linkage-key").digest()).decode()


class PiiKeyError(ValueError):
    pass


def parse_keys(spec: str) -> list[tuple[str, bytes]]:
    """`kid:base64key[,kid:base64key...]`, the first being the one new values are written with."""
    keys = []
    for part in spec.split(","):
        kid, sep, encoded = part.strip().partition(":")
        if not sep or not kid.isalnum():
            raise PiiKeyError("expected kid:base64key[,kid:base64key...]")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise PiiKeyError(f"key {kid} is not base64") from None
        if len(key) != 32:
            raise PiiKeyError(f"key {kid} must be 32 bytes")
        keys.append((kid, key))
    if not keys:
        raise PiiKeyError("no key")
    return keys


def parse_hash_keys(spec: str) -> list[bytes]:
    keys = []
    for part in spec.split(","):
        try:
            key = base64.b64decode(part.strip(), validate=True)
        except ValueError:
            raise PiiKeyError("a hash key is not base64") from None
        if len(key) < 32:
            raise PiiKeyError("a hash key must be at least 32 bytes")
        keys.append(key)
    return keys


def person_key(id_number: str, linkage_key: str) -> str:
    """A person's pseudonymous key: HMAC-SHA256 of the ID number under the linkage key, which intake shares
    with the economic-status verification centre (and nobody else). Events carry it where the ID number
    may not go, so a verification source can find the person without the number crossing Kafka."""
    key = parse_hash_keys(linkage_key)[0]
    return hmac.new(key, id_number.strip().upper().encode(), hashlib.sha256).hexdigest()


class PiiVault:
    def __init__(self, keys: str, hash_keys: str, linkage_key: str = DEV_LINKAGE_KEY) -> None:
        self._linkage_key = linkage_key
        parsed = parse_keys(keys)
        self._current_kid, current = parsed[0]
        self._ciphers = {kid: AESGCM(key) for kid, key in parsed}
        self._current = self._ciphers[self._current_kid]
        del current
        self._hash_keys = parse_hash_keys(hash_keys)

    def encrypt(self, value: str) -> str:
        nonce = os.urandom(12)
        sealed = self._current.encrypt(nonce, value.encode(), self._current_kid.encode())
        return f"{self._current_kid}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        kid, _, payload = token.partition(":")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PiiKeyError(f"no key {kid!r} to decrypt with")
        raw = base64.b64decode(payload)
        return cipher.decrypt(raw[:12], raw[12:], kid.encode()).decode()

    def lookup_hash(self, value: str) -> str:
        """The hash new rows store (the first hash key)."""
        return hmac.new(self._hash_keys[0], value.encode(), hashlib.sha256).hexdigest()

    def person_key(self, id_number: str) -> str:
        return person_key(id_number, self._linkage_key)

    def lookup_hashes(self, value: str) -> list[str]:
        """Every hash a stored row may carry while hash keys rotate."""
        return [hmac.new(key, value.encode(), hashlib.sha256).hexdigest() for key in self._hash_keys]


# An 18-character resident ID number wherever it appears in free text.
ID_NUMBER = re.compile(r"(?<![0-9])([1-9][0-9]{5})[0-9]{8}([0-9]{3}[0-9Xx])(?![0-9])")


def redact(text: str) -> str:
    return ID_NUMBER.sub(lambda m: m.group(1) + "********" + m.group(2)[-4:], text)


def redact_event(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: no resident ID number reaches a log line."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict
