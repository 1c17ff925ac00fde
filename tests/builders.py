"""Configuration rows for tests, written straight to the database."""

from __future__ import annotations

from typing import Any

from gateway import vault
from gateway.auth import display_prefix, hash_key, new_key
from gateway.models import ApiKey, ConfigVersion, ModelRoute, Provider

UPSTREAM_SECRET = "sk-upstream-canary-5ecret"


def provider(
    name: str,
    endpoint: str,
    *,
    dialect: str = "anthropic",
    key: str = UPSTREAM_SECRET,
    **options: Any,
) -> Provider:
    row = Provider.objects.create(
        name=name,
        type=dialect,
        endpoint=endpoint,
        api_key_encrypted=vault.encrypt(key) if key else "",
        options=options,
        position=Provider.objects.count(),
    )
    ConfigVersion.bump()
    return row


def route(
    prov: Provider,
    name: str,
    *,
    alias: str = "",
    weight: int = 1,
    context: int = 0,
    enabled: bool = True,
    **options: Any,
) -> ModelRoute:
    row = ModelRoute.objects.create(
        provider=prov,
        name=name,
        alias=alias or name,
        weight=weight,
        context=context,
        enabled=enabled,
        options=options,
        position=ModelRoute.objects.count(),
    )
    ConfigVersion.bump()
    return row


def client_key(name: str = "test-client", **fields: Any) -> str:
    """A new client key; only its hash is stored, the plaintext is returned. `fields`:
    more of the row, such as its limits (`max_concurrent=1`)."""
    key = new_key()
    ApiKey.objects.create(
        name=name, key_hash=hash_key(key), prefix=display_prefix(key), source="cli", **fields
    )
    ConfigVersion.bump()
    return key
