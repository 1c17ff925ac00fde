"""OpenAI-dialect providers through the real proxy path: requests converted, answers back."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from gateway.models import RequestLog
from gateway.translate.sse import SSEDecoder
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy, both_relay_modes
from tests.openai_request_check import problems

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
HELLO = [{"role": "user", "content": "hi"}]
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


@pytest.fixture
def key(proxy: LiveProxy, upstream: FakeUpstream) -> str:
    prov = builders.provider("oai", upstream.url, dialect="openai")
    builders.route(prov, "gpt-x", alias="claude-*")
    secret = builders.client_key()
    proxy.reload()
    return secret


def sdk(proxy: LiveProxy, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=proxy.url, api_key=key, max_retries=0)


def openai_accumulated(fixture: str):
    """The fixture's final completion as the official openai SDK assembles it."""
    state = ChatCompletionStreamState()
    decoder = SSEDecoder()
    for event in [*decoder.feed((FIXTURES / fixture).read_bytes()), *decoder.close()]:
        if event.data.strip() == "[DONE]":
            continue
        chunk = json.loads(event.data)
        if "error" in chunk or not (chunk.get("choices") or chunk.get("usage")):
            continue
        chunk["choices"] = [c for c in chunk["choices"] if c.get("index", 0) == 0]
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.current_completion_snapshot


CLEAN_STREAMS = [
    "openai/openai-stream-text-include-usage.sse",
    "openai/openai-stream-text-no-usage.sse",
    "openai/openai-stream-cached-tokens-usage.sse",
    "openai/openai-stream-parallel-tool-calls-usage.sse",
    "openai/openai-stream-tool-call-fragments.sse",
    "openai/openai-stream-gpt5-moderation-trailing-chunk.sse",
    "openai/openai-stream-n2-multiple-choices.sse",
    "openai/openrouter-stream-usage-empty-choices.sse",
    "openai/vllm-stream-finish-length.sse",
    "openai/azure-stream-tool-call-prompt-filter.sse",
    "openai/mistral-stream-text.sse",
    "openai/groq-stream-tool-call-reasoning-xgroq.sse",
    "openai/deepseek-stream-reasoning-content.sse",
    "openai/openrouter-stream-reasoning-details-claude.sse",
]


@pytest.mark.parametrize("fixture", CLEAN_STREAMS)
@both_relay_modes
def test_openai_stream_arrives_as_the_same_answer_in_anthropic_form(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fixture: str
) -> None:
    upstream.script(None, Script(stream_fixture=fixture))
    with sdk(proxy, key).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as s:
        message = s.get_final_message()
    expected = openai_accumulated(fixture).choices[0]

    text = "".join(b.text for b in message.content if b.type == "text")
    assert text == (expected.message.content or "")
    tools = [b for b in message.content if b.type == "tool_use"]
    calls = expected.message.tool_calls or []
    assert [(t.name, t.input) for t in tools] == [
        (c.function.name, json.loads(c.function.arguments or "{}")) for c in calls
    ]
    assert [t.id for t in tools if t.id] == [c.id for c in calls if c.id] or not calls[0].id
    assert message.stop_reason == STOP_REASONS[expected.finish_reason]


@both_relay_modes
def test_reasoning_arrives_as_a_thinking_block_before_the_text(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    fixture = "openai/deepseek-stream-reasoning-content.sse"
    upstream.script(None, Script(stream_fixture=fixture))
    with sdk(proxy, key).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as s:
        message = s.get_final_message()
    reasoning = ""
    for event in SSEDecoder().feed((FIXTURES / fixture).read_bytes()):
        if event.data.startswith("{"):
            for choice in json.loads(event.data).get("choices", []):
                reasoning += choice.get("delta", {}).get("reasoning_content") or ""
    assert [b.type for b in message.content][:2] == ["thinking", "text"]
    assert message.content[0].thinking == reasoning


@both_relay_modes
def test_usage_is_reported_in_anthropic_terms_and_logged(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    fixture = "openai/openai-stream-cached-tokens-usage.sse"
    # paced, so that the usage chunk arrives well after the commit point
    upstream.script(None, Script(stream_fixture=fixture, event_delay=0.02))
    with sdk(proxy, key).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as s:
        message = s.get_final_message()
    usage = openai_accumulated(fixture).usage
    cached = usage.prompt_tokens_details.cached_tokens
    assert message.usage.output_tokens == usage.completion_tokens
    assert message.usage.input_tokens == usage.prompt_tokens - cached
    assert message.usage.cache_read_input_tokens == cached
    proxy.flush_logs()
    row = RequestLog.objects.get()
    assert (row.output_tokens, row.cache_read_tokens) == (usage.completion_tokens, cached)


@pytest.mark.parametrize(
    "fixture",
    ["openai/groq-stream-error-event.sse", "openai/openrouter-stream-error-midstream-length.sse"],
)
@both_relay_modes
def test_an_error_in_the_openai_stream_becomes_an_anthropic_error_event(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fixture: str
) -> None:
    upstream.script(None, Script(stream_fixture=fixture))
    body = {"model": "claude-x", "max_tokens": 5, "messages": HELLO, "stream": True}
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key})
    # both providers reasoned first, then failed: the client saw output, so the stream
    # goes on to an Anthropic error event, never a success and never [DONE]
    assert response.status_code == 200
    assert "[DONE]" not in response.text
    events = SSEDecoder().feed(response.content)
    assert [e.name for e in events][:3] == ["message_start", "ping", "content_block_start"]
    assert events[-1].name == "error"
    assert "message_stop" not in [e.name for e in events]


@pytest.mark.parametrize(
    "fixture",
    [
        "openai/openai-chat-parallel-tool-calls.json",
        "openai/openai-chat-tool-call-cached-tokens.json",
        "openai/deepseek-chat-reasoning-parallel-tool-calls.json",
        "openai/gemini-openai-compat-tool-call-empty-id.json",
        "openai/azure-chat-finish-length.json",
    ],
)
def test_openai_completion_becomes_an_anthropic_message(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, fixture: str
) -> None:
    upstream.script(None, Script(message_fixture=fixture))
    message = sdk(proxy, key).messages.create(model="claude-x", max_tokens=50, messages=HELLO)
    choice = json.loads((FIXTURES / fixture).read_text())["choices"][0]
    tools = [b for b in message.content if b.type == "tool_use"]
    calls = choice["message"].get("tool_calls") or []
    assert [(t.name, t.input) for t in tools] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
    ]
    assert all(t.id for t in tools), "every tool_use has an id, generated when missing"
    assert len({t.id for t in tools}) == len(tools)
    assert message.stop_reason == STOP_REASONS[choice["finish_reason"]]


def test_openai_error_status_becomes_an_anthropic_error(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    error = json.loads((FIXTURES / "openai/openai-error-model-not-found.json").read_text())
    upstream.script(None, Script(status=400, error_body=error))
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(proxy, key).messages.create(model="claude-x", max_tokens=5, messages=HELLO)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"] in caught.value.body["error"]["message"]


CLAUDE_CODE = [
    "main-request.json",
    "tool-result-request.json",
    "side-title-request.json",
    "interactive-auto-mode-request.json",
    "nonstream-fallback-request.json",
]


@pytest.mark.parametrize("name", CLAUDE_CODE)
def test_claude_code_request_reaches_the_provider_as_a_valid_chat_request(
    proxy: LiveProxy, upstream: FakeUpstream, key: str, name: str
) -> None:
    raw = (FIXTURES / "claude-code" / name).read_bytes()
    headers = {
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "anthropic-beta": "claude-code-20250219",
        "anthropic-version": "2023-06-01",
    }
    response = httpx.post(f"{proxy.url}/v1/messages?beta=true", content=raw, headers=headers)
    assert response.status_code == 200, response.text

    received = upstream.requests[-1]
    assert received.path.endswith("/v1/chat/completions")
    assert received.header("authorization") == f"Bearer {builders.UPSTREAM_SECRET}"
    assert received.header("x-api-key") is None and received.header("anthropic-beta") is None
    assert received.header("user-agent") == "anthropic-proxy", "the gateway, not aiohttp"
    assert problems(received.json) == []
    assert received.json["model"] == "gpt-x"


def test_tool_loop_round_trip_through_an_openai_provider(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    client = sdk(proxy, key)
    tools = [
        {
            "name": "multiply",
            "description": "a*b",
            "input_schema": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            },
        }
    ]
    upstream.script(
        None, Script(stream_fixture="openai/openai-stream-tool-call-fragments.sse", times=1)
    )
    with client.messages.stream(
        model="claude-x", max_tokens=50, messages=HELLO, tools=tools
    ) as stream:
        first = stream.get_final_message()
    call = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use"

    upstream.script(None, Script(stream_fixture="openai/openai-stream-text-include-usage.sse"))
    follow_up = [
        *HELLO,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "42"}],
        },
    ]
    with client.messages.stream(
        model="claude-x", max_tokens=50, messages=follow_up, tools=tools
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].type == "text"

    sent = upstream.requests[-1].json
    assert problems(sent) == []
    assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
    assert assistant["tool_calls"][0]["id"] == call.id
    tool_message = sent["messages"][sent["messages"].index(assistant) + 1]
    assert tool_message == {"role": "tool", "tool_call_id": call.id, "content": "42"}


def test_count_tokens_on_an_openai_route_is_a_local_estimate(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    raw = (FIXTURES / "claude-code" / "count-tokens-request.json").read_bytes()
    headers = {"x-api-key": key, "content-type": "application/json"}
    response = httpx.post(f"{proxy.url}/v1/messages/count_tokens", content=raw, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-token-count-source"] == "estimate"
    assert response.json()["input_tokens"] > 1000
    assert upstream.requests == [], "an OpenAI provider cannot count Anthropic tokens"


def test_thinking_made_from_openai_reasoning_never_reaches_an_anthropic_provider(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    """DeepSeek answered with reasoning; the next turn fails over to an Anthropic provider."""
    upstream.script(None, Script(stream_fixture="openai/deepseek-stream-reasoning-content.sse"))
    client = sdk(proxy, key)
    with client.messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as stream:
        first = stream.get_final_message()
    assert first.content[0].type == "thinking"

    anthropic_side = builders.provider("claude", f"{upstream.url}/anthropic")
    builders.route(anthropic_side, "claude-real", alias="next-*")
    proxy.reload()
    real = {"type": "thinking", "thinking": "mine", "signature": "RealSig123"}
    turns = [
        *HELLO,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "go on"},
        {"role": "assistant", "content": [real, {"type": "text", "text": "ok"}]},
        {"role": "user", "content": "and?"},
    ]
    client.messages.create(model="next-1", max_tokens=50, messages=turns)

    sent = upstream.requests[-1].json
    assert upstream.requests[-1].path.endswith("/anthropic/v1/messages")
    blocks = [b for m in sent["messages"] if isinstance(m["content"], list) for b in m["content"]]
    thinking = [b for b in blocks if b["type"] == "thinking"]
    assert thinking == [real], "the synthetic block is gone, the real one kept"


def test_mistral_thinking_chunks_become_thinking_then_text(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    """Magistral sends thinking as typed content parts; the openai SDK cannot hold them,
    so the expectation is read from the recording directly."""
    fixture = "openai/mistral-magistral-stream-thinking-chunks.sse"
    upstream.script(None, Script(stream_fixture=fixture))
    with sdk(proxy, key).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as s:
        message = s.get_final_message()
    thinking = text = ""
    for event in SSEDecoder().feed((FIXTURES / fixture).read_bytes()):
        if not event.data.startswith("{"):
            continue
        content = json.loads(event.data)["choices"][0]["delta"].get("content")
        if isinstance(content, str):
            text += content
        for part in content if isinstance(content, list) else []:
            thinking += "".join(t["text"] for t in part.get("thinking", []))
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert (message.content[0].thinking, message.content[1].text) == (thinking, text)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 232)


WEB_SEARCH = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]


def test_server_tool_request_prefers_an_anthropic_provider_and_says_why(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    claude = builders.provider("claude", f"{upstream.url}/anthropic")
    builders.route(claude, "claude-real", alias="claude-*", weight=0)  # lower than "oai"
    proxy.reload()
    upstream.script(
        "claude-real", Script(message_fixture="anthropic/anthropic-message-thinking.json")
    )
    sdk(proxy, key).messages.create(
        model="claude-x", max_tokens=50, messages=HELLO, tools=WEB_SEARCH
    )
    assert [r.model for r in upstream.requests] == ["claude-real"]
    proxy.flush_logs()
    row = RequestLog.objects.get()
    assert row.skipped == [
        {
            "provider": "oai",
            "model": "gpt-x",
            "reason": "needs server tool web_search (Anthropic providers only)",
        }
    ]


def test_server_tool_request_with_only_openai_routes_is_served_without_the_tool(
    proxy: LiveProxy, upstream: FakeUpstream, key: str
) -> None:
    message = sdk(proxy, key).messages.create(
        model="claude-x", max_tokens=50, messages=HELLO, tools=WEB_SEARCH
    )
    assert message.content
    assert "tools" not in upstream.requests[-1].json
