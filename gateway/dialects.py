"""How to talk to a provider in its own dialect: URL, headers, body, and how to read back.

Anthropic-dialect providers get the client's bytes with only the model changed (unless a
provider option asks for more); OpenAI-dialect providers get a converted request, and
their answers are converted back.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway import fastjson, upstream, vault
from gateway.body import replace_model
from gateway.relay import AnthropicRelay, ConvertedRelay, Relay
from gateway.snapshot import ProviderConf, RouteConf
from gateway.streamwatch import Usage, message_usage
from gateway.tokens import estimate_input_tokens
from gateway.translate.anthropic_body import AnthropicOptions, adapt, filter_betas
from gateway.translate.errors import anthropic_error_from_openai
from gateway.translate.request import ConversionError, OpenAIOptions, to_openai_request
from gateway.translate.response import to_anthropic_message
from gateway.upstream import UpstreamError, anthropic_headers, join_url


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """A validated client request, as the dispatcher needs it."""

    endpoint: str  # "messages" or "messages/count_tokens"
    query: str
    headers: Mapping[bytes, bytes]
    body: bytes
    payload: dict[str, Any]
    model: str
    stream: bool
    started: float = field(default_factory=time.monotonic)

    @property
    def stop_sequences(self) -> list[str]:
        stops = self.payload.get("stop_sequences")
        return [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []


def provider_secrets(provider: ProviderConf) -> tuple[str, ...]:
    """What the proxy sends this provider that must never be shown back: its key and its
    credential-like header values. Some providers echo the key in an error message."""
    values = [provider.api_key()]
    values += [
        v for k, v in upstream.provider_headers(provider).items() if vault.is_credential_header(k)
    ]
    return tuple(value for value in values if value)


# --- Anthropic ---------------------------------------------------------------------------


def _anthropic_options(provider: ProviderConf) -> AnthropicOptions:
    options = provider.options
    return AnthropicOptions(
        hoist_system_messages=bool(options.get("hoistSystemMessages", False)),
        drop_fields=tuple(options.get("dropFields") or ()),
    )


def anthropic_body(req: ProxyRequest, route: RouteConf) -> bytes:
    adapted = adapt(req.payload, _anthropic_options(route.provider))
    if adapted is None:
        return replace_model(req.body, req.model, route.name)
    adapted["model"] = route.name
    return fastjson.dumps(adapted)


def anthropic_request_headers(req: ProxyRequest, provider: ProviderConf) -> dict[str, str]:
    headers = anthropic_headers(req.headers, provider)
    options = provider.options
    if "anthropic-beta" in headers and ("dropBetas" in options or "allowedBetas" in options):
        allowed = options.get("allowedBetas")
        kept = filter_betas(
            headers["anthropic-beta"],
            tuple(options.get("dropBetas") or ()),
            tuple(allowed) if allowed is not None else None,
        )
        if kept:
            headers["anthropic-beta"] = kept
        else:
            del headers["anthropic-beta"]
    return headers


# --- OpenAI ------------------------------------------------------------------------------


def _openai_options(route: RouteConf) -> OpenAIOptions:
    provider, model = route.provider.options, route.options
    return OpenAIOptions(
        max_tokens_field=str(provider.get("maxTokensField", "max_tokens")),
        max_output_tokens=model.get("maxOutputTokens"),
        reasoning=bool(model.get("reasoning", False)),
        send_reasoning_content=bool(model.get("reasoning", False)),
        drop_fields=tuple(provider.get("dropFields") or ()),
        strict_tool_schema=provider.get("toolSchema") == "strict",
        # routing.prefer_anthropic sends a server-tool request here only when no
        # Anthropic-dialect route exists: serve it without those tools rather than not at all
        drop_anthropic_tools=True,
    )


def openai_body(req: ProxyRequest, route: RouteConf) -> bytes:
    try:
        converted = to_openai_request(
            req.payload, route.name, stream=req.stream, options=_openai_options(route)
        )
    except ConversionError as exc:
        raise UpstreamError("unsupported", str(exc)) from exc
    return fastjson.dumps(converted)


def openai_request_headers(provider: ProviderConf) -> dict[str, str]:
    headers = {
        "user-agent": upstream.USER_AGENT,
        "content-type": "application/json",
        "accept-encoding": "gzip, deflate",
    }
    headers.update(upstream.provider_headers(provider))
    key = provider.api_key()
    if key:
        headers["authorization"] = f"Bearer {key}"
    return headers


# --- the dialect switch ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outbound:
    url: str
    headers: dict[str, str]
    body: bytes


def outbound(req: ProxyRequest, route: RouteConf) -> Outbound:
    provider = route.provider
    if provider.dialect == "openai":
        url = join_url(provider.endpoint, "chat/completions")
        return Outbound(url, openai_request_headers(provider), openai_body(req, route))
    url = join_url(provider.endpoint, req.endpoint)
    if req.query:
        url = f"{url}?{req.query}"
    return Outbound(url, anthropic_request_headers(req, provider), anthropic_body(req, route))


def relay_for(
    response: aiohttp.ClientResponse, req: ProxyRequest, route: RouteConf, idle: float
) -> Relay:
    """The relay for `route`'s dialect; `idle`: seconds of upstream silence that end the
    stream once it has been committed."""
    secrets = provider_secrets(route.provider)
    if route.provider.dialect != "openai":
        return AnthropicRelay(response, secrets=secrets, idle=idle)
    return ConvertedRelay(
        response,
        secrets=secrets,
        idle=idle,
        model=route.name,
        provider=route.provider.name,
        stop_sequences=req.stop_sequences,
        input_tokens_hint=estimate_input_tokens(req.payload),
    )


def non_stream_reply(body: bytes, req: ProxyRequest, route: RouteConf) -> tuple[bytes, Any]:
    """The client's JSON body and its usage, from a complete upstream body."""
    try:
        parsed = fastjson.loads(body)
    except ValueError as exc:
        raise UpstreamError("protocol", "the provider's answer is not JSON") from exc
    if not isinstance(parsed, dict):
        raise UpstreamError("protocol", "the provider's answer is not a JSON object")
    if route.provider.dialect != "openai":
        return body, message_usage(parsed)
    if "error" in parsed and not parsed.get("choices"):
        raise UpstreamError("stream_error", str(parsed["error"])[:500])
    message = to_anthropic_message(
        parsed, stop_sequences=req.stop_sequences, provider=route.provider.name
    )
    usage = Usage()
    usage.update(message.get("usage") or {})
    return fastjson.dumps(message), usage


def status_error(response: aiohttp.ClientResponse, body: bytes, route: RouteConf) -> UpstreamError:
    """An upstream error status as an UpstreamError with an Anthropic-style message; an
    OpenAI body is not kept (it must not go back to the client as is)."""
    error = upstream.status_error(response, body)
    if route.provider.dialect == "openai":
        _, _, message = anthropic_error_from_openai(response.status, body)
        error.message, error.body = message or error.message, b""
    secrets = provider_secrets(route.provider)
    error.message = vault.scrub(error.message, secrets)
    if error.body:
        error.body = vault.scrub(error.body.decode("utf-8", "replace"), secrets).encode()
    error.args = (error.message,)
    return error
