"""What applying an uploaded configuration would change, as lines to read before applying.

Pure: two ConfigSpecs in, lines out. Provider keys and credential-like header values are
masked (an `env.NAME` reference is not a secret and is shown as is). Whether two keys are
the same is the caller's `reveal`, so this module never decrypts anything itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway import vault
from gateway.auth import hash_key
from gateway.config_file import (
    HASH_PREFIX,
    KEY_LIMIT_FIELDS,
    MODEL_OPTION_FIELDS,
    PROVIDER_OPTION_FIELDS,
    RETRY_FIELDS,
    ROUTING_FIELDS,
    ClientKeySpec,
    ConfigSpec,
    ModelSpec,
    ProviderSpec,
)
from gateway.vault import ENV_PREFIX, is_credential_header

MASK = "•••• (encrypted)"
HEADER_MASK = "••••"
UNSET = "(unset)"

Kind = Literal["added", "removed", "changed"]
Reveal = Callable[[str], str]
KeyIdentity = Callable[[ClientKeySpec], str]


@dataclass(frozen=True)
class DiffLine:
    kind: Kind
    subject: str  # "provider acme", "model acme/m (claude-*)", "routing", "key apiKeys[0]"
    detail: str = ""


@dataclass(frozen=True)
class ConfigDiff:
    lines: tuple[DiffLine, ...] = ()

    def of(self, kind: Kind) -> tuple[DiffLine, ...]:
        return tuple(line for line in self.lines if line.kind == kind)

    @property
    def added(self) -> tuple[DiffLine, ...]:
        return self.of("added")

    @property
    def removed(self) -> tuple[DiffLine, ...]:
        return self.of("removed")

    @property
    def changed(self) -> tuple[DiffLine, ...]:
        return self.of("changed")

    @property
    def empty(self) -> bool:
        return not self.lines


def _as_is(value: Any) -> Any:
    return value


def mask_key(api_key: str) -> str:
    """How a provider key may be shown: a reference as is, anything else masked."""
    if not api_key:
        return "none"
    return api_key if api_key.startswith(ENV_PREFIX) else MASK


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header values fit to show: credential-like literals become HEADER_MASK."""
    return {
        name: HEADER_MASK
        if is_credential_header(name) and not str(value).startswith(ENV_PREFIX)
        else value
        for name, value in headers.items()
    }


def show_value(schema: Mapping[str, Any], key: str, value: Any) -> str:
    """A stored option value as the config file writes it (durations as 5s, off, ...)."""
    written = schema[key].write(value) if key in schema else value
    if key == "headers" and isinstance(written, Mapping):
        written = mask_headers(written)
    if isinstance(written, str):
        return written
    return json.dumps(written, ensure_ascii=False, sort_keys=True)


def _changes(
    old: Mapping[str, Any], new: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[str]:
    """`key: old → new` for each key whose value differs, in schema order."""
    keys = [*schema, *(k for k in {**old, **new} if k not in schema)]
    out = []
    for key in keys:
        if (key in old, old.get(key)) == (key in new, new.get(key)):
            continue
        before = show_value(schema, key, old[key]) if key in old else UNSET
        after = show_value(schema, key, new[key]) if key in new else UNSET
        out.append(f"{key}: {before} → {after}")
    return out


def _reordered(old_order: Sequence[Hashable], new_order: Sequence[Hashable]) -> bool:
    old_set, new_set = set(old_order), set(new_order)
    return [k for k in old_order if k in new_set] != [k for k in new_order if k in old_set]


def _join(parts: Sequence[str]) -> str:
    return "; ".join(parts)


# --- providers ---------------------------------------------------------------------------


def _provider_summary(provider: ProviderSpec) -> str:
    parts = [provider.type, provider.endpoint, f"apiKey {mask_key(provider.api_key)}"]
    if not provider.enabled:
        parts.append("disabled")
    return _join(parts + _changes({}, provider.options, PROVIDER_OPTION_FIELDS))


def _key_change(old: str, new: str, reveal: Reveal) -> list[str]:
    if reveal(old) == reveal(new):
        return []
    before, after = mask_key(old), mask_key(new)
    if before == after:
        return [f"apiKey: a different key ({after})"]
    return [f"apiKey: {before} → {after}"]


def _provider_changes(old: ProviderSpec, new: ProviderSpec, reveal: Reveal) -> list[str]:
    plain = {"type": old.type, "endpoint": old.endpoint, "enabled": old.enabled}
    wanted = {"type": new.type, "endpoint": new.endpoint, "enabled": new.enabled}
    return [
        *_changes(plain, wanted, {}),
        *_key_change(old.api_key, new.api_key, reveal),
        *_changes(_revealed(old.options, reveal), _revealed(new.options, reveal), _OPTIONS),
    ]


_OPTIONS = PROVIDER_OPTION_FIELDS


def _revealed(options: Mapping[str, Any], reveal: Reveal) -> Mapping[str, Any]:
    """Options with stored (encrypted) header values revealed, so that the same value as
    stored and as written in a file compares equal. Shown masked all the same."""
    headers = options.get("headers")
    if not isinstance(headers, Mapping):
        return options
    opened = {k: reveal(v) if isinstance(v, str) else v for k, v in headers.items()}
    return {**options, "headers": opened}


def _provider_lines(old: ConfigSpec, new: ConfigSpec, reveal: Reveal) -> list[DiffLine]:
    before = {p.name: p for p in old.providers}
    after = {p.name: p for p in new.providers}
    lines = [
        DiffLine("added", f"provider {name}", _provider_summary(p))
        for name, p in after.items()
        if name not in before
    ]
    lines += [DiffLine("removed", f"provider {name}") for name in before if name not in after]
    for name, provider in after.items():
        if name in before and (changes := _provider_changes(before[name], provider, reveal)):
            lines.append(DiffLine("changed", f"provider {name}", _join(changes)))
    if _reordered(list(before), list(after)):
        lines.append(DiffLine("changed", "providers", "reordered"))
    return lines


# --- models ------------------------------------------------------------------------------

RouteKey = tuple[str, str, str]


def _route_key(model: ModelSpec) -> RouteKey:
    return (model.provider, model.name, model.alias)


def _route_label(key: RouteKey) -> str:
    provider, name, alias = key
    return f"model {provider}/{name} ({alias})"


def _model_fields(model: ModelSpec) -> dict[str, Any]:
    return {
        "context": model.context,
        "weight": model.weight,
        "thinking": model.thinking,
        "enabled": model.enabled,
    }


def _model_summary(model: ModelSpec) -> str:
    parts = [f"context {model.context}", f"weight {model.weight}"]
    parts += ["thinking"] if model.thinking else []
    parts += [] if model.enabled else ["disabled"]
    return _join(parts + _changes({}, model.options, MODEL_OPTION_FIELDS))


def _model_lines(old: ConfigSpec, new: ConfigSpec) -> list[DiffLine]:
    before = {_route_key(m): m for m in old.models}
    after = {_route_key(m): m for m in new.models}
    lines = [
        DiffLine("added", _route_label(key), _model_summary(m))
        for key, m in after.items()
        if key not in before
    ]
    lines += [DiffLine("removed", _route_label(key)) for key in before if key not in after]
    for key, model in after.items():
        if key not in before:
            continue
        was = before[key]
        changes = _changes(_model_fields(was), _model_fields(model), {})
        changes += _changes(was.options, model.options, MODEL_OPTION_FIELDS)
        if changes:
            lines.append(DiffLine("changed", _route_label(key), _join(changes)))
    if _reordered(list(before), list(after)):
        lines.append(DiffLine("changed", "models", "reordered"))
    return lines


# --- settings and client keys ------------------------------------------------------------


def _settings_lines(old: ConfigSpec, new: ConfigSpec) -> list[DiffLine]:
    lines = []
    for subject, schema, before, after in (
        ("routing", ROUTING_FIELDS, old.routing, new.routing),
        ("retry", RETRY_FIELDS, old.retry, new.retry),
    ):
        if changes := _changes(before, after, schema):
            lines.append(DiffLine("changed", subject, _join(changes)))
    if old.data_retention_days != new.data_retention_days:
        detail = f"{old.data_retention_days} → {new.data_retention_days} days"
        lines.append(DiffLine("changed", "auth.dataRetentionDays", detail))
    return lines


def show_client_key(key: ClientKeySpec) -> str:
    limits = show_limits(key)
    return _show_key_value(key) + (f", limits {limits}" if limits != "none" else "")


def _show_key_value(key: ClientKeySpec) -> str:
    if key.kind == "env":
        return key.value
    if key.kind == "random":
        return "$RANDOM_KEY (a new key, shown once on apply)"
    if key.kind == "hash":
        return key.value[: len("hash:") + 8] + "…"
    return "•••• (stored as a hash)"


def show_limits(key: ClientKeySpec) -> str:
    parts = [
        f"{name} {getattr(key.limits, attr)}"
        for name, attr in KEY_LIMIT_FIELDS.items()
        if getattr(key.limits, attr) is not None
    ]
    return ", ".join(parts) or "none"


def _key_lines(old: ConfigSpec, new: ConfigSpec, identity: KeyIdentity) -> list[DiffLine]:
    before = {k.slot: k for k in old.client_keys}
    after = {k.slot: k for k in new.client_keys}
    lines = [
        DiffLine("added", f"key {slot}", show_client_key(k))
        for slot, k in after.items()
        if slot not in before
    ]
    lines += [
        DiffLine("removed", f"key {slot}", show_client_key(k))
        for slot, k in before.items()
        if slot not in after
    ]
    for slot, key in after.items():
        was = before.get(slot)
        if was is None:
            continue
        # $RANDOM_KEY over an existing slot keeps the key generated for it earlier.
        if key.kind != "random" and identity(was) != identity(key):
            detail = f"{show_client_key(was)} → {show_client_key(key)}"
            lines.append(DiffLine("changed", f"key {slot}", detail))
        elif was.limits != key.limits:
            detail = f"limits {show_limits(was)} → {show_limits(key)}"
            lines.append(DiffLine("changed", f"key {slot}", detail))
    return lines


def diff_configs(
    current: ConfigSpec,
    incoming: ConfigSpec,
    *,
    reveal: Reveal = _as_is,
    key_identity: KeyIdentity = lambda key: key.value,
) -> ConfigDiff:
    """What `incoming` would change in `current`.

    `reveal` maps a provider key to what it stands for (e.g. decrypts `encrypted:` tokens)
    so an unchanged key is not reported; `key_identity` does the same for client keys.
    """
    return ConfigDiff(
        tuple(
            [
                *_provider_lines(current, incoming, reveal),
                *_model_lines(current, incoming),
                *_settings_lines(current, incoming),
                *_key_lines(current, incoming, key_identity),
            ]
        )
    )


def _reveal(api_key: str) -> str:
    """What a provider key stands for, so an exported token equals its literal key."""
    if api_key.startswith(vault.ENCRYPTED_PREFIX):
        try:
            return vault.decrypt(api_key.removeprefix(vault.ENCRYPTED_PREFIX))
        except vault.SecretError:
            return api_key
    return api_key


def _key_identity(key: ClientKeySpec) -> str:
    return HASH_PREFIX + hash_key(key.value) if key.kind == "literal" else key.value


def diff_against_database(spec: ConfigSpec) -> ConfigDiff:
    """`spec` compared with the configuration in the database (reads it: sync ORM)."""
    from gateway.config_db import export_config

    return diff_configs(export_config(), spec, reveal=_reveal, key_identity=_key_identity)
