"""Client authentication: keyed key hashes and the in-memory key index.

Keys are compared by HMAC-SHA256 under a pepper derived from SECRET_KEY, so a copy of the
database alone cannot be used to test guesses. The index lives in the snapshot; checking a
key costs one HMAC and one dict lookup, never a database call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.conf import settings

from gateway.limits import UNLIMITED, KeyLimits

KEY_PREFIX = "sk-ap-"
DISPLAY_PREFIX_LEN = 12


@dataclass(frozen=True, slots=True)
class ClientKey:
    """What the request path knows about a client key."""

    id: int
    name: str
    expires_at: datetime | None = None
    limits: KeyLimits = UNLIMITED


@cache
def _pepper() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), b"anthropic-proxy api keys", "sha256").digest()


def hash_key(key: str) -> str:
    return hmac.new(_pepper(), key.encode(), hashlib.sha256).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LEN]


def presented_key(headers: Mapping[bytes, bytes]) -> str | None:
    """The key a client sent, from `x-api-key` or `Authorization: Bearer`."""
    raw = headers.get(b"x-api-key")
    if raw:
        return raw.decode("latin-1").strip() or None
    raw = headers.get(b"authorization")
    if raw:
        scheme, _, value = raw.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


def authenticate(
    headers: Mapping[bytes, bytes], index: Mapping[str, ClientKey], now: datetime
) -> ClientKey | None:
    """The client key for these headers, or None when missing, unknown or expired."""
    key = presented_key(headers)
    if key is None:
        return None
    found = index.get(hash_key(key))
    if found is None or (found.expires_at is not None and found.expires_at <= now):
        return None
    return found
