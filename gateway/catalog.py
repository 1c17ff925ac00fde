"""What each provider says it serves: its `GET /v1/models` list, read in its own dialect.

Pure: `parse_page`, `context_of`, `compare`, `refreshed`, `render`. Edges: `check` calls
every enabled provider at once through `upstream.new_client`, `store_contexts` writes the
database. Only `validate` uses this; the request path never lists models upstream.

Context windows are read from the first of these fields a model entry has, as providers
name it differently: `context_length` (OpenRouter, Together), `context_window` (Groq),
`max_input_tokens` (Anthropic), `max_context_length` (Mistral), `max_model_len` (vLLM),
`input_token_limit` / `inputTokenLimit` (Google), `top_provider.context_length`
(OpenRouter). A configured name also matches a listed `models/NAME` (Google's ids).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp
from django.db import transaction

from gateway import vault
from gateway.config_file import ConfigSpec, ModelSpec, ProviderSpec
from gateway.models import ConfigVersion, ModelRoute
from gateway.upstream import (
    DEFAULT_ANTHROPIC_VERSION,
    USER_AGENT,
    UpstreamError,
    converted_errors,
    join_url,
    new_client,
    provider_headers,
    status_error,
)

CONTEXT_FIELDS = (
    "context_length",
    "context_window",
    "max_input_tokens",
    "max_context_length",
    "max_model_len",
    "input_token_limit",
    "inputTokenLimit",
    "top_provider.context_length",
)
ANTHROPIC_PAGE_LIMIT = 1000  # the largest page Anthropic's list endpoint gives
MAX_PAGES = 100
DEFAULT_TIMEOUT = 10.0
REDACTED = "[redacted]"
_MAX_CONTEXT = 2**31 - 1  # what ModelRoute.context and the config file can hold
_ID_PREFIX = "models/"

State = Literal[
    "ok", "auth_failed", "unreachable", "http_error", "bad_response", "no_key", "disabled"
]
_STATE_LABELS: dict[str, str] = {
    "ok": "ok",
    "auth_failed": "auth failed",
    "unreachable": "unreachable",
    "http_error": "HTTP error",
    "bad_response": "bad response",
    "no_key": "no key",
    "disabled": "disabled",
}
_UNREACHABLE_KINDS = {"connect", "connect_timeout", "idle_timeout", "reset"}


class ListingError(ValueError):
    """The provider answered 200 with something that is not a model list."""


@dataclass(frozen=True)
class ListedModel:
    id: str
    context: int | None = None


@dataclass(frozen=True)
class Page:
    models: tuple[ListedModel, ...]
    has_more: bool = False
    last_id: str | None = None


@dataclass(frozen=True)
class ProviderResult:
    name: str
    dialect: str
    url: str
    state: State
    detail: str = ""  # why it failed, with the provider's key redacted
    models: tuple[ListedModel, ...] = ()
    payloads: tuple[Any, ...] = ()  # each page's JSON as received, key redacted

    @property
    def failed(self) -> bool:
        return self.state not in ("ok", "disabled")

    def find(self, name: str) -> ListedModel | None:
        exact = next((m for m in self.models if m.id == name), None)
        return exact or next((m for m in self.models if m.id == _ID_PREFIX + name), None)


@dataclass(frozen=True)
class ModelCheck:
    model: ModelSpec
    state: Literal["found", "missing", "unchecked"]
    listed_context: int | None = None

    @property
    def new_context(self) -> int | None:
        """The provider's context window when it differs from the configured one."""
        if self.listed_context and self.listed_context != self.model.context:
            return self.listed_context
        return None

    @property
    def failed(self) -> bool:
        return self.state == "missing" and self.model.enabled


@dataclass(frozen=True)
class Report:
    providers: tuple[ProviderResult, ...]
    models: tuple[ModelCheck, ...]

    def problems(self) -> list[str]:
        """What makes `validate` exit non-zero, one phrase each."""
        failing = [
            f"provider {p.name}: {_STATE_LABELS[p.state]}" for p in self.providers if p.failed
        ]
        missing = [
            f"model {c.model.provider}/{c.model.name}: missing" for c in self.models if c.failed
        ]
        return failing + missing


@dataclass(frozen=True)
class Target:
    """A provider ready to be called: URL and headers resolved, key kept out of reprs."""

    provider: ProviderSpec
    url: str
    headers: Mapping[str, str] = field(repr=False)
    key: str = field(default="", repr=False)


# --- parsing (pure) ----------------------------------------------------------------------


def parse_page(dialect: str, payload: Any) -> Page:
    """One `/v1/models` answer: `{"data": [...]}` or a bare list (Together); entries
    without a string `id` (or `name`) are skipped. Only Anthropic pages say `has_more`."""
    entries = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise ListingError('expected {"data": [...]} or a list of models')
    models = tuple(m for m in map(_listed, entries) if m is not None)
    if dialect != "anthropic" or not isinstance(payload, dict):
        return Page(models)
    last_id = payload.get("last_id")
    if not isinstance(last_id, str) or not last_id:
        last_id = models[-1].id if models else None
    return Page(models, payload.get("has_more") is True, last_id)


def _listed(entry: Any) -> ListedModel | None:
    if not isinstance(entry, dict):
        return None
    ident = entry.get("id", entry.get("name"))
    if not isinstance(ident, str) or not ident:
        return None
    return ListedModel(ident, context_of(entry))


def context_of(entry: Mapping[str, Any]) -> int | None:
    """The context window a model entry publishes (see CONTEXT_FIELDS), else None."""
    for path in CONTEXT_FIELDS:
        value: Any = entry
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        tokens = _tokens(value)
        if tokens is not None:
            return tokens
    return None


def _tokens(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= _MAX_CONTEXT else None


# --- comparing and reporting (pure) ------------------------------------------------------


def compare(spec: ConfigSpec, results: Mapping[str, ProviderResult]) -> Report:
    """Each configured model against its provider's list; `results` covers every provider."""
    checks: list[ModelCheck] = []
    for model in spec.models:
        result = results[model.provider]
        listed = result.find(model.name)
        if result.state != "ok":
            checks.append(ModelCheck(model, "unchecked"))
        elif listed is None:
            checks.append(ModelCheck(model, "missing"))
        else:
            checks.append(ModelCheck(model, "found", listed.context))
    return Report(tuple(results[p.name] for p in spec.providers), tuple(checks))


def refreshed(spec: ConfigSpec, report: Report) -> ConfigSpec:
    """`spec` with each context window the provider publishes; `report` is of this spec."""
    models = tuple(
        replace(check.model, context=check.new_context) if check.new_context else check.model
        for check in report.models
    )
    return replace(spec, models=models)


def render(report: Report) -> list[str]:
    """Two aligned plain-text tables (providers, then models) and a summary line."""
    providers = [_provider_row(p) for p in report.providers]
    models = [_model_row(check, report) for check in report.models]
    return [
        *table(("PROVIDER", "TYPE", "STATUS", "MODELS", "URL", "DETAIL"), providers, right={3}),
        "",
        *table(
            ("PROVIDER", "MODEL", "ALIAS", "STATUS", "CONTEXT", "PROVIDER CONTEXT", "NOTE"),
            models,
            right={4, 5},
        ),
        "",
        summary(report),
    ]


def _provider_row(result: ProviderResult) -> list[str]:
    count = str(len(result.models)) if result.state == "ok" else "-"
    label = _STATE_LABELS[result.state]
    return [result.name, result.dialect, label, count, result.url, _one_line(result.detail)]


def _model_row(check: ModelCheck, report: Report) -> list[str]:
    model = check.model
    provider = next(p for p in report.providers if p.name == model.provider)
    if check.state == "unchecked":
        note = f"provider {_STATE_LABELS[provider.state]}"
    elif check.state == "missing":
        note = "" if model.enabled else "model disabled"
    elif check.listed_context is None:
        note = "provider publishes no context window"
    else:
        note = "context differs" if check.new_context else ""
    listed = str(check.listed_context) if check.listed_context else "-"
    configured = str(model.context) if model.context else "-"
    return [model.provider, model.name, model.alias, check.state, configured, listed, note]


def summary(report: Report) -> str:
    states = Counter(p.state for p in report.providers)
    found = Counter(c.state for c in report.models)
    differ = sum(1 for c in report.models if c.new_context)
    provider_part = ", ".join(
        f"{states[state]} {label}" for state, label in _STATE_LABELS.items() if states[state]
    )
    model_part = ", ".join(
        f"{found[state]} {state}" for state in ("found", "missing", "unchecked") if found[state]
    )
    return (
        f"providers: {provider_part or 'none'}; models: {model_part or 'none'}; "
        f"context windows that differ: {differ}"
    )


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None
) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; `right` aligns numbers."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if i in (right or ()) else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *map(line, rows)]


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def redact(text: str, key: str) -> str:
    """`text` with the key (and its JSON-escaped form) replaced by REDACTED."""
    if not key:
        return text
    return text.replace(key, REDACTED).replace(json.dumps(key)[1:-1], REDACTED)


# --- calling the providers ---------------------------------------------------------------


def check(spec: ConfigSpec, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Call every enabled provider concurrently and compare; not from a running loop."""
    results: dict[str, ProviderResult] = {}
    targets: list[Target] = []
    for provider in spec.providers:
        target_or_result = _target(provider)
        if isinstance(target_or_result, Target):
            targets.append(target_or_result)
        else:
            results[provider.name] = target_or_result
    limits = aiohttp.ClientTimeout(
        total=timeout, connect=timeout, sock_connect=timeout, sock_read=timeout
    )
    for result in asyncio.run(check_providers(targets, limits)):
        results[result.name] = result
    return compare(spec, results)


def _target(provider: ProviderSpec) -> Target | ProviderResult:
    url = join_url(provider.endpoint, "models")
    if not provider.enabled:
        return ProviderResult(provider.name, provider.type, url, "disabled", "not checked")
    try:
        key = provider_key(provider.api_key)
    except vault.SecretError as exc:
        return ProviderResult(provider.name, provider.type, url, "no_key", str(exc))
    headers = request_headers(provider, key)
    return Target(provider, url, headers, key)


def provider_key(api_key: str) -> str:
    """The key to send now: `env.NAME` read from the environment, `encrypted:` decrypted."""
    if vault.env_name(api_key):
        key = vault.resolve_env(api_key)
        if not key:
            raise vault.SecretError(f"{api_key} is not set")
        return key
    if api_key.startswith(vault.ENCRYPTED_PREFIX):
        return vault.decrypt(api_key.removeprefix(vault.ENCRYPTED_PREFIX))
    return api_key


def request_headers(provider: ProviderSpec, key: str) -> dict[str, str]:
    """The provider's own headers (env refs resolved) and its dialect's credentials."""
    headers = {"user-agent": USER_AGENT, **provider_headers(provider)}
    headers["accept"] = "application/json"
    if provider.type == "anthropic":
        headers.setdefault("anthropic-version", DEFAULT_ANTHROPIC_VERSION)
        if key:
            headers["x-api-key"] = key
    elif key:
        headers["authorization"] = f"Bearer {key}"
    return headers


async def check_providers(
    targets: Sequence[Target], limits: aiohttp.ClientTimeout
) -> list[ProviderResult]:
    async with new_client() as session:
        return list(await asyncio.gather(*(_check_one(session, t, limits) for t in targets)))


async def _check_one(
    session: aiohttp.ClientSession, target: Target, limits: aiohttp.ClientTimeout
) -> ProviderResult:
    provider, pages = target.provider, list[Any]()
    failure = ProviderResult(provider.name, provider.type, target.url, "bad_response")
    try:
        models = await _fetch_listing(session, target, limits, pages)
    except UpstreamError as exc:
        state: State = "unreachable" if exc.kind in _UNREACHABLE_KINDS else "bad_response"
        if exc.kind == "http_status":
            state = "auth_failed" if exc.status in (401, 403) else "http_error"
        return replace(failure, state=state, detail=redact(exc.describe(), target.key))
    except TimeoutError:
        return replace(failure, state="unreachable", detail=f"no answer within {limits.total:g}s")
    except ListingError as exc:
        return replace(failure, detail=redact(str(exc), target.key))
    return replace(failure, state="ok", models=models, payloads=tuple(pages))


async def _fetch_listing(
    session: aiohttp.ClientSession, target: Target, limits: aiohttp.ClientTimeout, pages: list[Any]
) -> tuple[ListedModel, ...]:
    """Every page: Anthropic's follow `after_id` while `has_more`; OpenAI's is one page."""
    anthropic = target.provider.type == "anthropic"
    params = {"limit": str(ANTHROPIC_PAGE_LIMIT)} if anthropic else {}
    models: list[ListedModel] = []
    for _ in range(MAX_PAGES):
        payload = await _get_json(session, target, params, limits)
        pages.append(payload)
        page = parse_page(target.provider.type, payload)
        models.extend(page.models)
        if not page.has_more:
            return tuple(models)
        if not page.last_id or page.last_id == params.get("after_id"):
            raise ListingError("has_more is true but the page names no new last model")
        params["after_id"] = page.last_id
    raise ListingError(f"still has_more after {MAX_PAGES} pages")


async def _get_json(
    session: aiohttp.ClientSession,
    target: Target,
    params: Mapping[str, str],
    limits: aiohttp.ClientTimeout,
) -> Any:
    with converted_errors():
        async with session.get(
            target.url,
            params=params,
            headers=dict(target.headers),
            timeout=limits,
            allow_redirects=False,
        ) as response:
            body = await response.read()
            if not 200 <= response.status < 300:
                raise status_error(response, body)
    try:
        return json.loads(redact(body.decode("utf-8", "replace"), target.key))
    except ValueError as exc:
        raise ListingError(f"the answer is not JSON: {exc}") from None


# --- storing -----------------------------------------------------------------------------


def store_contexts(report: Report) -> list[str]:
    """Set each route's context to its provider's, in one transaction; one line per change."""
    published = {
        (c.model.provider, c.model.name): c.listed_context
        for c in report.models
        if c.state == "found" and c.listed_context
    }
    lines: list[str] = []
    with transaction.atomic():
        for route in ModelRoute.objects.select_related("provider").select_for_update():
            new = published.get((route.provider.name, route.name))
            if new is None or new == route.context:
                continue
            lines.append(f"changed model {route}: context {route.context or '-'} → {new}")
            route.context = new
            route.save(update_fields=["context"])
        if lines:
            ConfigVersion.bump()
    return lines
