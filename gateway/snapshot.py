"""The immutable routing table the request path reads instead of the database.

`build_snapshot()` copies providers, routes, client keys and settings out of the database;
`SnapshotHolder` keeps the current one and rebuilds it when `ConfigVersion` moves. The
check runs off the request path, once per `CONFIG_POLL_SECONDS` and, with Redis, as soon
as another process announces a change (gateway/config_sync.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from gateway import vault
from gateway.auth import ClientKey, hash_key

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds allowed for each phase of an attempt."""

    connect: float = 10.0
    first_token: float = 30.0
    idle: float = 120.0
    non_stream: float = 600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_same_provider: bool = False
    max_retries: int = 3
    initial_delay: float = 0.1
    max_delay: float = 5.0
    backoff_multiplier: float = 2.0


@dataclass(frozen=True)
class ProviderConf:
    name: str
    dialect: str
    endpoint: str
    api_key_env: str = ""
    api_key_literal: str = ""
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)

    def api_key(self) -> str:
        """The key to send upstream now: `env.NAME` is resolved at request time."""
        if self.api_key_env:
            return vault.resolve_env(self.api_key_env)
        return self.api_key_literal

    def missing_credentials(self) -> str | None:
        """The reason this provider cannot be called now, when its key variable is unset."""
        if self.api_key_env and not vault.resolve_env(self.api_key_env):
            return f"{self.api_key_env} is not set"
        return None

    def __repr__(self) -> str:  # never show the key
        return f"ProviderConf(name={self.name!r}, dialect={self.dialect!r})"


@dataclass(frozen=True)
class RouteConf:
    id: int
    provider: ProviderConf
    name: str
    alias: str
    context: int = 0
    weight: int = 1
    thinking: bool = False
    enabled: bool = True
    position: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def _alias_pattern(self) -> re.Pattern[str]:
        parts = (re.escape(part) for part in self.alias.split("*"))
        return re.compile(".*".join(parts), re.DOTALL)

    def matches(self, requested: str) -> bool:
        """Exact name, or the alias glob where `*` is a wildcard anywhere."""
        if requested == self.name:
            return True
        if "*" not in self.alias:
            return requested == self.alias
        return self._alias_pattern.fullmatch(requested) is not None

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider.name, self.name)


@dataclass(frozen=True)
class Snapshot:
    version: int = 0
    routes: tuple[RouteConf, ...] = ()
    providers: Mapping[str, ProviderConf] = field(default_factory=dict)
    keys: Mapping[str, ClientKey] = field(default_factory=dict)
    tps_threshold: float = 40.0
    deadlines: Deadlines = field(default_factory=Deadlines)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    routing: Mapping[str, Any] = field(default_factory=dict)

    @property
    def session_affinity(self) -> bool:
        return bool(self.routing.get("sessionAffinity", True))

    def deadlines_for(self, route: RouteConf) -> Deadlines:
        """Global deadlines with the route's and its provider's overrides applied."""
        return _deadlines(
            {**self.provider_overrides(route.provider), **route.options}, self.deadlines
        )

    @staticmethod
    def provider_overrides(provider: ProviderConf) -> Mapping[str, Any]:
        return {k: v for k, v in provider.options.items() if k == "connectTimeout"}


def _deadlines(values: Mapping[str, Any], base: Deadlines = Deadlines()) -> Deadlines:
    """`base` with the durations that `values` (camelCase, seconds) set."""
    return Deadlines(
        connect=float(values.get("connectTimeout", base.connect)),
        first_token=float(values.get("firstTokenTimeout", base.first_token)),
        idle=float(values.get("idleTimeout", base.idle)),
        non_stream=float(values.get("nonStreamTimeout", base.non_stream)),
    )


def _retry(retry: Mapping[str, Any]) -> RetryPolicy:
    base = RetryPolicy()
    return RetryPolicy(
        retry_same_provider=bool(retry.get("retrySameProvider", base.retry_same_provider)),
        max_retries=int(retry.get("maxRetries", base.max_retries)),
        initial_delay=float(retry.get("initialDelay", base.initial_delay)),
        max_delay=float(retry.get("maxDelay", base.max_delay)),
        backoff_multiplier=float(retry.get("backoffMultiplier", base.backoff_multiplier)),
    )


def _provider_conf(row: Any) -> ProviderConf:
    literal = ""
    if row.api_key_encrypted:
        try:
            literal = vault.decrypt(row.api_key_encrypted)
        except vault.SecretError:
            log.error("provider %s: its stored key cannot be decrypted; sending none", row.name)
    return ProviderConf(
        name=row.name,
        dialect=row.type,
        endpoint=row.endpoint,
        api_key_env=row.api_key_env,
        api_key_literal=literal,
        enabled=row.enabled,
        options=MappingProxyType(dict(row.options or {})),
    )


def _key_index() -> dict[str, ClientKey]:
    from gateway.models import ApiKey

    index: dict[str, ClientKey] = {}
    for row in ApiKey.objects.filter(revoked_at__isnull=True):
        digest = row.key_hash
        if row.env_ref:
            value = vault.resolve_env(row.env_ref)
            if not value:
                log.warning("client key %s: %s is not set; key disabled", row.name, row.env_ref)
                continue
            digest = hash_key(value)
        if digest:
            index[digest] = ClientKey(
                id=row.id, name=row.name, expires_at=row.expires_at, limits=row.limits
            )
    return index


def build_snapshot() -> Snapshot:
    """Read the whole configuration in one go (sync ORM; call it off the event loop)."""
    from gateway.models import ConfigVersion, ModelRoute, Provider, RoutingSettings

    version = ConfigVersion.current()
    providers = {row.name: _provider_conf(row) for row in Provider.objects.all()}
    routes = tuple(
        RouteConf(
            id=row.id,
            provider=providers[row.provider.name],
            name=row.name,
            alias=row.alias or row.name,
            context=row.context,
            weight=row.weight,
            thinking=row.thinking,
            enabled=row.enabled,
            position=row.position,
            options=MappingProxyType(dict(row.options or {})),
        )
        for row in ModelRoute.objects.select_related("provider").order_by("position", "id")
    )
    settings_row = RoutingSettings.objects.filter(pk=1).first()
    routing = dict(settings_row.routing) if settings_row else {}
    retry = dict(settings_row.retry) if settings_row else {}
    return Snapshot(
        version=version,
        routes=routes,
        providers=MappingProxyType(providers),
        keys=MappingProxyType(_key_index()),
        tps_threshold=float(routing.get("tpsThreshold", 40.0)),
        deadlines=_deadlines(routing),
        retry=_retry(retry),
        routing=MappingProxyType(routing),
    )


class SnapshotHolder:
    """Owns the current snapshot; swapping the reference is the only mutation."""

    def __init__(
        self,
        build: Callable[[], Snapshot] = build_snapshot,
        version: Callable[[], int] | None = None,
    ) -> None:
        self._build = build
        self._version = version or _current_version
        self.current = Snapshot()
        self._loaded = False
        self.on_reload: Callable[[Snapshot], None] | None = None

    def reload(self) -> Snapshot:
        """Rebuild now (sync; runs the ORM)."""
        self.current = self._build()
        self._loaded = True
        if self.on_reload is not None:
            self.on_reload(self.current)
        return self.current

    def reload_if_changed(self) -> bool:
        if self._loaded and self._version() == self.current.version:
            return False
        self.reload()
        return True

    async def check(self, executor: Executor) -> bool:
        """Reload on `executor` if the version moved; failures are logged, never raised.
        Shared by the poll and the Redis nudges (gateway/config_sync.py)."""
        loop = asyncio.get_running_loop()
        try:
            changed = await loop.run_in_executor(executor, self.reload_if_changed)
        except Exception:
            log.exception("configuration reload failed; keeping version %s", self.current.version)
            return False
        if changed:
            log.info("configuration version %s loaded", self.current.version)
        return changed

    async def poll_forever(self, interval: float, executor: Executor) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.check(executor)


def _current_version() -> int:
    from gateway.models import ConfigVersion

    return ConfigVersion.current()
