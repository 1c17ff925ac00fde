"""The configuration file: YAML text ⇄ frozen dataclasses, with errors that name the YAML path.

Pure: no database, no I/O. Options are held exactly as the database stores them (camelCase
keys, durations in float seconds), so `config_db` copies them without translating, and one
schema table per section drives both reading and writing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit

import yaml

from gateway.limits import UNLIMITED, KeyLimits
from gateway.vault import ENCRYPTED_PREFIX, ENV_PREFIX

RANDOM_KEY = "$RANDOM_KEY"
HASH_PREFIX = "hash:"
DIALECTS = ("anthropic", "openai")
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
DEFAULT_RETENTION_DAYS = 30
API_KEYS = "apiKeys"
STATIC_KEYS = "auth.staticKeys"

_MAX_INT = 2**31 - 1
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HASH_HEX = re.compile(r"[0-9a-fA-F]{64}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*(ms|s|m|h)?\s*")
_UNIT_SECONDS = (("h", 3600), ("m", 60), ("s", 1))
_IGNORED_AUTH = {
    "database": "the gateway uses Django's database (DATABASE_URL)",
    "openid": "the admin dashboard uses Django logins",
    "adminUI": "the admin dashboard is part of the Django app and always on",
}

KeyKind = Literal["random", "env", "hash", "literal"]


class ConfigError(ValueError):
    """A config file that cannot be used; `path` is the YAML path of the offending value."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    endpoint: str
    type: str = "anthropic"
    # "" (no key), a literal key, "env.NAME", or "encrypted:<token>" from our own export.
    api_key: str = ""
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    provider: str
    alias: str
    context: int = 0
    weight: int = 1
    thinking: bool = False
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientKeySpec:
    """One entry of `apiKeys` or `auth.staticKeys`; `slot` ("apiKeys[0]") names its ApiKey."""

    slot: str
    kind: KeyKind
    value: str  # as written; a hash is normalised to "hash:<lowercase hex>"
    limits: KeyLimits = UNLIMITED  # `{key: ..., limits: {...}}` entries

    @property
    def list_name(self) -> str:
        return self.slot.partition("[")[0]


@dataclass(frozen=True)
class ConfigSpec:
    providers: tuple[ProviderSpec, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    retry: Mapping[str, Any] = field(default_factory=dict)
    routing: Mapping[str, Any] = field(default_factory=dict)
    client_keys: tuple[ClientKeySpec, ...] = ()
    data_retention_days: int = DEFAULT_RETENTION_DAYS
    # "spec." when the file nested everything under `spec:`; only used to name paths.
    root: str = field(default="", compare=False)

    def path(self, local: str) -> str:
        return self.root + local


@dataclass(frozen=True)
class ParseResult:
    spec: ConfigSpec
    warnings: tuple[str, ...] = ()


# --- durations -------------------------------------------------------------------------


def parse_duration(value: str | float) -> float:
    """Seconds for "100ms", "5s", "2m", "1h" or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 5s, got {_describe(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(
                f"expected a duration like 100ms, 5s, 2m or 1h, got {_describe(value)}"
            )
        number, unit = float(match[1]), match[2] or "s"
        seconds = number / 1000 if unit == "ms" else number * dict(_UNIT_SECONDS)[unit]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a duration of zero or more, got {_describe(value)}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest whole-number form that reads back exactly: 0.1 → 100ms, 120 → 2m."""
    for unit, size in _UNIT_SECONDS:
        count = round(seconds / size)
        if count and parse_duration(f"{count}{unit}") == seconds:
            return f"{count}{unit}"
    millis = round(seconds * 1000)
    if parse_duration(f"{millis}ms") == seconds:
        return f"{millis}ms" if millis else "0s"
    return f"{seconds!r}s"


# --- scalar readers: (value, path) -> value, raising ConfigError ------------------------


def _describe(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _expected(what: str, value: object, path: str) -> NoReturn:
    raise ConfigError(path, f"expected {what}, got {_describe(value)}")


def _int(value: Any, path: str, minimum: int = -_MAX_INT, maximum: int = _MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _expected("an integer", value, path)
    if not minimum <= value <= maximum:
        raise ConfigError(path, f"expected an integer from {minimum} to {maximum}, got {value}")
    return value


def _float(value: Any, path: str, minimum: float = 0.0, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _expected("a number", value, path)
    if not (math.isfinite(value) and minimum <= value <= maximum):
        bound = f"at least {minimum}" if maximum == math.inf else f"from {minimum} to {maximum}"
        raise ConfigError(path, f"expected a number {bound}, got {value}")
    return float(value)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _expected("true or false", value, path)
    return value


def _str(value: Any, path: str, max_length: int = 200) -> str:
    if not isinstance(value, str) or not value:
        _expected("a non-empty string", value, path)
    if len(value) > max_length:
        raise ConfigError(path, f"longer than {max_length} characters")
    return value


def _duration(value: Any, path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(path, str(exc)) from None


def _duration_or_off(value: Any, path: str) -> float | None:
    """hedgeAfter: null, "off" or false switch it off (YAML 1.1 reads a bare off as false)."""
    if value is None or value is False or value == "off":
        return None
    return _duration(value, path)


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        _expected(" or ".join(choices), value, path)
    return str(value)


def _env_ref(value: str, path: str) -> str:
    if not _ENV_NAME.fullmatch(value[len(ENV_PREFIX) :]):
        raise ConfigError(path, f"expected env.NAME with a variable name, got {_describe(value)}")
    return value


def _headers(value: Any, path: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, header_value in _mapping(value, path).items():
        at = f"{path}.{name}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ConfigError(at, "not a valid HTTP header name")
        if not isinstance(header_value, str):
            _expected("a string", header_value, at)
        if header_value.startswith(ENV_PREFIX):
            _env_ref(header_value, at)
        headers[name] = header_value
    return headers


def _str_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        _expected("a list of strings", value, path)
    return [_str(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _url(value: Any, path: str) -> str:
    url = _str(value, path, max_length=500)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _expected("an http(s) URL", value, path)
    return url


# --- sections driven by a schema table ---------------------------------------------------


@dataclass(frozen=True)
class _Field:
    read: Callable[[Any, str], Any]
    write: Callable[[Any], Any] = lambda value: value


def _mapping(value: Any, path: str, allowed: Mapping[str, object] | None = None) -> dict:
    """A YAML mapping (null counts as empty) whose keys are all in `allowed`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        _expected("a mapping", value, path)
    for key in value:
        if allowed is not None and key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key (expected one of: {', '.join(allowed)})")
    return value


def _read_fields(raw: Mapping[str, Any], path: str, schema: Mapping[str, _Field]) -> dict:
    return {name: f.read(raw[name], f"{path}.{name}") for name, f in schema.items() if name in raw}


def _write_fields(values: Mapping[str, Any], schema: Mapping[str, _Field]) -> dict:
    return {name: f.write(values[name]) for name, f in schema.items() if name in values}


def _section(schema: Mapping[str, _Field]) -> _Field:
    def read(value: Any, path: str) -> dict:
        return _read_fields(_mapping(value, path, schema), path, schema)

    return _Field(read, partial(_write_fields, schema=schema))


_DURATION_FIELD = _Field(_duration, format_duration)
_OFF_DURATION_FIELD = _Field(_duration_or_off, lambda v: "off" if v is None else format_duration(v))
_BOOL_FIELD = _Field(_bool)
_CIRCUIT = {
    "failureThreshold": _Field(partial(_int, minimum=1)),
    "errorRate": _Field(partial(_float, minimum=0.0, maximum=1.0)),
    "window": _DURATION_FIELD,
    "cooldown": _DURATION_FIELD,
    "minRequests": _Field(partial(_int, minimum=1)),
}
ROUTING_FIELDS = {
    "tpsThreshold": _Field(_float),
    "connectTimeout": _DURATION_FIELD,
    "firstTokenTimeout": _DURATION_FIELD,
    "idleTimeout": _DURATION_FIELD,
    "nonStreamTimeout": _DURATION_FIELD,
    "hedgeAfter": _OFF_DURATION_FIELD,
    "sessionAffinity": _BOOL_FIELD,
    "circuit": _section(_CIRCUIT),
}
RETRY_FIELDS = {
    "retrySameProvider": _BOOL_FIELD,
    "maxRetries": _Field(partial(_int, minimum=0)),
    "initialDelay": _DURATION_FIELD,
    "maxDelay": _DURATION_FIELD,
    "backoffMultiplier": _Field(partial(_float, minimum=1.0)),
}
MODEL_OPTION_FIELDS = {
    "firstTokenTimeout": _DURATION_FIELD,
    "idleTimeout": _DURATION_FIELD,
    "nonStreamTimeout": _DURATION_FIELD,
    "connectTimeout": _DURATION_FIELD,
    "hedgeAfter": _OFF_DURATION_FIELD,
    "maxOutputTokens": _Field(partial(_int, minimum=1)),
    "reasoning": _BOOL_FIELD,
    "images": _BOOL_FIELD,
    "tools": _BOOL_FIELD,
}
PROVIDER_OPTION_FIELDS = {
    "connectTimeout": _DURATION_FIELD,
    "maxTokensField": _Field(partial(_choice, choices=MAX_TOKENS_FIELDS)),
    "dropBetas": _Field(_str_list),
    "allowedBetas": _Field(_str_list),
    "dropFields": _Field(_str_list),
    "hoistSystemMessages": _BOOL_FIELD,
    "toolSchema": _Field(partial(_choice, choices=("default", "strict"))),
    "headers": _Field(_headers, dict),
}
_PROVIDER_KEYS = dict.fromkeys(("type", "endpoint", "apiKey", "enabled", *PROVIDER_OPTION_FIELDS))
_MODEL_KEYS = dict.fromkeys(
    ("name", "provider", "alias", "context", "weight", "thinking", "enabled", *MODEL_OPTION_FIELDS)
)
_ROOT_KEYS = dict.fromkeys(("providers", "models", "retry", "routing", "apiKeys", "auth"))
_AUTH_KEYS = dict.fromkeys(("staticKeys", "dataRetentionDays", *_IGNORED_AUTH))


# --- reading -----------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                mark = key_node.start_mark
                raise ConfigError(
                    "", f'duplicate key "{key}" at line {mark.line + 1}, column {mark.column + 1}'
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no object tags
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"YAML syntax error{where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError("", f"YAML syntax error: {exc}") from None


def parse_config(text: str) -> ParseResult:
    """Read a config file; raises ConfigError naming the first bad value's path."""
    document = _load_yaml(text)
    if document is None:
        raise ConfigError("", "the file is empty")
    root = ""
    body = _mapping(document, "")
    if "spec" in body:
        _mapping(body, "", {"spec": None})
        root, body = "spec.", _mapping(body["spec"], "spec")
    body = _mapping(body, root.rstrip("."), _ROOT_KEYS)
    providers = _read_providers(body.get("providers"), f"{root}providers")
    auth = _mapping(body.get("auth"), f"{root}auth", _AUTH_KEYS)
    warnings = tuple(
        f"{root}auth.{name} is ignored: {why}"
        for name, why in _IGNORED_AUTH.items()
        if name in auth
    )
    spec = ConfigSpec(
        providers=providers,
        models=_read_models(body.get("models"), f"{root}models", {p.name for p in providers}),
        retry=_section(RETRY_FIELDS).read(body.get("retry"), f"{root}retry"),
        routing=_section(ROUTING_FIELDS).read(body.get("routing"), f"{root}routing"),
        client_keys=_read_client_keys(body.get("apiKeys"), auth.get("staticKeys"), root),
        data_retention_days=_int(
            auth.get("dataRetentionDays", DEFAULT_RETENTION_DAYS),
            f"{root}auth.dataRetentionDays",
            minimum=1,
        ),
        root=root,
    )
    return ParseResult(spec, warnings)


def _read_providers(raw: Any, path: str) -> tuple[ProviderSpec, ...]:
    providers = []
    for name, body in _mapping(raw, path).items():
        at = f"{path}.{name}"
        _str(name, at, max_length=100)
        providers.append(_read_provider(name, _mapping(body, at, _PROVIDER_KEYS), at))
    return tuple(providers)


def _read_provider(name: str, body: dict, path: str) -> ProviderSpec:
    if "endpoint" not in body:
        raise ConfigError(f"{path}.endpoint", "required")
    dialect = _choice(body.get("type", "anthropic"), f"{path}.type", DIALECTS)
    options = _read_fields(body, path, PROVIDER_OPTION_FIELDS)
    if "maxTokensField" in options and dialect != "openai":
        raise ConfigError(f"{path}.maxTokensField", "only applies to type: openai")
    return ProviderSpec(
        name=name,
        endpoint=_url(body["endpoint"], f"{path}.endpoint"),
        type=dialect,
        api_key=_provider_key(body.get("apiKey"), f"{path}.apiKey"),
        enabled=_bool(body.get("enabled", True), f"{path}.enabled"),
        options=options,
    )


def _provider_key(value: Any, path: str) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        _expected("a string", value, path)
    if value == RANDOM_KEY:
        raise ConfigError(
            path, "$RANDOM_KEY only makes client keys; give the provider's key (e.g. env.NAME)"
        )
    if value.startswith(ENV_PREFIX):
        return _env_ref(_str(value, path), path)
    if value == ENCRYPTED_PREFIX:
        raise ConfigError(path, "encrypted: needs the token from an export")
    return value


def _read_models(raw: Any, path: str, providers: set[str]) -> tuple[ModelSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        _expected("a list", raw, path)
    models: list[ModelSpec] = []
    first_path: dict[tuple[str, str, str], str] = {}
    for index, body in enumerate(raw):
        at = f"{path}[{index}]"
        model = _read_model(_mapping(body, at, _MODEL_KEYS), at, providers)
        identity = (model.provider, model.name, model.alias)
        if identity in first_path:
            raise ConfigError(
                at, f"duplicate route: same provider, name and alias as {first_path[identity]}"
            )
        first_path[identity] = at
        models.append(model)
    return tuple(models)


def _read_model(body: dict, path: str, providers: set[str]) -> ModelSpec:
    for required in ("name", "provider"):
        if required not in body:
            raise ConfigError(f"{path}.{required}", "required")
    name = _str(body["name"], f"{path}.name")
    provider = _str(body["provider"], f"{path}.provider", max_length=100)
    if provider not in providers:
        raise ConfigError(f"{path}.provider", f'unknown provider "{provider}"')
    return ModelSpec(
        name=name,
        provider=provider,
        alias=_str(body.get("alias", name), f"{path}.alias"),
        context=_int(body.get("context", 0), f"{path}.context", minimum=0),
        weight=_int(body.get("weight", 1), f"{path}.weight"),
        thinking=_bool(body.get("thinking", False), f"{path}.thinking"),
        enabled=_bool(body.get("enabled", True), f"{path}.enabled"),
        options=_read_fields(body, path, MODEL_OPTION_FIELDS),
    )


def _read_client_keys(api_keys: Any, static_keys: Any, root: str) -> tuple[ClientKeySpec, ...]:
    keys: list[ClientKeySpec] = []
    first_slot: dict[str, str] = {}
    for list_name, raw in ((API_KEYS, api_keys), (STATIC_KEYS, static_keys)):
        if raw is not None and not isinstance(raw, list):
            _expected("a list", raw, root + list_name)
        for index, value in enumerate(raw or ()):
            slot = f"{list_name}[{index}]"
            key = _client_key(value, slot, root + slot)
            if key.kind != "random" and key.value in first_slot:
                raise ConfigError(root + slot, f"duplicate key: same as {first_slot[key.value]}")
            first_slot[key.value] = root + slot
            keys.append(key)
    return tuple(keys)


# `limits:` of a client key entry: YAML name -> KeyLimits field (gateway/limits.py)
KEY_LIMIT_FIELDS = {
    "concurrent": "concurrent",
    "requestsPerMinute": "requests_per_minute",
    "tokensPerDay": "tokens_per_day",
    "tokensPerMonth": "tokens_per_month",
}
_KEY_ENTRY_KEYS = dict.fromkeys(("key", "limits"))


def _client_key(value: Any, slot: str, path: str) -> ClientKeySpec:
    """A key as a string, or `{key: <string>, limits: {concurrent: 4, ...}}`."""
    if isinstance(value, dict):
        entry = _mapping(value, path, _KEY_ENTRY_KEYS)
        if "key" not in entry:
            raise ConfigError(f"{path}.key", "missing (the key itself, as in a plain entry)")
        spec = _client_key_text(entry["key"], slot, f"{path}.key")
        limits_path = f"{path}.limits"
        raw = _mapping(entry.get("limits"), limits_path, KEY_LIMIT_FIELDS)
        limits = {
            KEY_LIMIT_FIELDS[name]: _int(raw[name], f"{limits_path}.{name}", 1, 2**62)
            for name in KEY_LIMIT_FIELDS
            if raw.get(name) is not None
        }
        return ClientKeySpec(spec.slot, spec.kind, spec.value, KeyLimits(**limits))
    return _client_key_text(value, slot, path)


def _write_client_key(key: ClientKeySpec) -> Any:
    if key.limits == UNLIMITED:
        return key.value
    limits = {
        name: getattr(key.limits, attr)
        for name, attr in KEY_LIMIT_FIELDS.items()
        if getattr(key.limits, attr) is not None
    }
    return {"key": key.value, "limits": limits}


def _client_key_text(value: Any, slot: str, path: str) -> ClientKeySpec:
    text = _str(value, path, max_length=1000)
    if text == RANDOM_KEY:
        return ClientKeySpec(slot, "random", text)
    if text.startswith(ENV_PREFIX):
        return ClientKeySpec(slot, "env", _env_ref(_str(text, path), path))
    if text.startswith(HASH_PREFIX):
        digest = text[len(HASH_PREFIX) :]
        if not _HASH_HEX.fullmatch(digest):
            _expected("hash: followed by 64 hex digits", value, path)
        return ClientKeySpec(slot, "hash", HASH_PREFIX + digest.lower())
    if text.startswith(ENCRYPTED_PREFIX):
        raise ConfigError(path, "client keys are stored as hashes; encrypted: is for provider keys")
    if text.startswith("$"):
        raise ConfigError(path, f"unknown placeholder {_describe(text)} (only $RANDOM_KEY exists)")
    return ClientKeySpec(slot, "literal", text)


# --- writing -----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Indents list items under their key, as people write them by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def format_config(spec: ConfigSpec) -> str:
    """YAML text that `parse_config` reads back to an equal spec."""
    document: dict[str, Any] = {
        "providers": {p.name: _write_provider(p) for p in spec.providers},
        "models": [_write_model(m) for m in spec.models],
    }
    if spec.retry:
        document["retry"] = _write_fields(spec.retry, RETRY_FIELDS)
    if spec.routing:
        document["routing"] = _write_fields(spec.routing, ROUTING_FIELDS)
    api_keys = [_write_client_key(k) for k in spec.client_keys if k.list_name == API_KEYS]
    static_keys = [_write_client_key(k) for k in spec.client_keys if k.list_name == STATIC_KEYS]
    if api_keys:
        document["apiKeys"] = api_keys
    auth: dict[str, Any] = {"staticKeys": static_keys} if static_keys else {}
    document["auth"] = {**auth, "dataRetentionDays": spec.data_retention_days}
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096)


def _write_provider(provider: ProviderSpec) -> dict[str, Any]:
    body: dict[str, Any] = {"type": provider.type, "endpoint": provider.endpoint}
    if provider.api_key:
        body["apiKey"] = provider.api_key
    if not provider.enabled:
        body["enabled"] = False
    return body | _write_fields(provider.options, PROVIDER_OPTION_FIELDS)


def _write_model(model: ModelSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": model.name,
        "provider": model.provider,
        "alias": model.alias,
        "context": model.context,
        "weight": model.weight,
    }
    if model.thinking:
        body["thinking"] = True
    if not model.enabled:
        body["enabled"] = False
    return body | _write_fields(model.options, MODEL_OPTION_FIELDS)
