"""to_anthropic_message on every recorded chat completion, checked against the official
SDKs' types (`openai.types.chat.ChatCompletion` in, `anthropic.types.Message` out), and
anthropic_error_from_openai on the recorded error body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
from openai.types.chat import ChatCompletion

from gateway.translate.errors import anthropic_error_from_openai, openai_stream_error
from gateway.translate.response import INVALID_ARGUMENTS_KEY, to_anthropic_message
from gateway.translate.thinking import synthetic_signature

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures/openai"
COMPLETIONS = [
    p
    for p in sorted(FIXTURES.glob("*.json"))
    if "-error-" not in p.name and "-request-" not in p.name
]
OPENAI_TO_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def convert(body: dict[str, Any], **options: Any) -> anthropic.types.Message:
    """Convert and validate the result against the Anthropic SDK's Message type."""
    return anthropic.types.Message.model_validate(to_anthropic_message(body, **options))


@pytest.mark.parametrize("path", COMPLETIONS, ids=lambda p: p.name)
def test_recorded_completion_agrees_with_the_official_sdks(path: Path) -> None:
    body = json.loads(path.read_text())
    theirs = ChatCompletion.model_validate(body)
    message, choice = convert(body, provider="p"), theirs.choices[0]
    extra = choice.message.model_extra or {}
    assert message.id.startswith("msg_") and message.model == theirs.model
    assert "".join(b.text for b in message.content if b.type == "text") == (
        choice.message.content or ""
    )
    thinking = [b for b in message.content if b.type == "thinking"]
    assert "".join(b.thinking for b in thinking) == (extra.get("reasoning_content") or "")
    assert all(b.signature == synthetic_signature("p") for b in thinking)
    tools = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
    calls = choice.message.tool_calls or []
    assert tools == [(c.function.name, json.loads(c.function.arguments)) for c in calls]
    ids = [b.id for b in message.content if b.type == "tool_use"]
    assert ids == [c.id or ids[i] for i, c in enumerate(calls)] and all(ids)
    assert message.stop_reason == OPENAI_TO_ANTHROPIC_STOP[choice.finish_reason]
    assert theirs.usage is not None
    details = theirs.usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    assert message.usage.input_tokens == theirs.usage.prompt_tokens - cached
    assert message.usage.cache_read_input_tokens == cached
    assert message.usage.output_tokens == theirs.usage.completion_tokens


def test_thinking_comes_before_text_and_tool_use() -> None:
    body = json.loads((FIXTURES / "deepseek-chat-reasoning-parallel-tool-calls.json").read_text())
    kinds = [b.type for b in convert(body).content]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]


def test_cached_prompt_tokens_become_cache_reads() -> None:
    body = json.loads((FIXTURES / "openai-chat-tool-call-cached-tokens.json").read_text())
    usage = convert(body).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (1187 - 1152, 1152)


def test_empty_provider_tool_id_gets_a_deterministic_toolu_id() -> None:
    body = json.loads((FIXTURES / "gemini-openai-compat-tool-call-empty-id.json").read_text())
    first, again = convert(body).content[0], convert(body).content[0]
    assert first.type == "tool_use" and first.id.startswith("toolu_") and first.id == again.id


def _completion(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "model": "up",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }


def test_invalid_json_arguments_are_kept_raw_under_a_marker_key() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    block = convert(_completion({"tool_calls": [call]}, "tool_calls")).content[0]
    assert block.type == "tool_use" and block.input == {INVALID_ARGUMENTS_KEY: "{oops"}


def test_empty_arguments_are_an_empty_object() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    block = convert(_completion({"tool_calls": [call]}, "tool_calls")).content[0]
    assert block.type == "tool_use" and block.input == {}


def test_refusal_is_text_and_content_filter_is_refusal() -> None:
    message = convert(_completion({"content": None, "refusal": "No."}, "content_filter"))
    assert [b.text for b in message.content if b.type == "text"] == ["No."]
    assert message.stop_reason == "refusal"


def test_reasoning_field_and_mistral_thinking_parts_become_thinking() -> None:
    parts = [
        {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
        {"type": "text", "text": "hi"},
    ]
    message = convert(_completion({"content": parts}))
    assert [b.type for b in message.content] == ["thinking", "text"]
    message = convert(
        _completion(
            {
                "content": "hi",
                "reasoning": "think",
                "reasoning_details": [{"type": "reasoning.text", "text": "think"}],
            }
        )
    )
    assert [b.thinking for b in message.content if b.type == "thinking"] == ["think"]


def test_stop_sequence_named_by_the_provider_or_left_in_the_text() -> None:
    named = convert(_completion({"content": "a"}, stop_reason="##"), stop_sequences=["##"])
    assert (named.stop_reason, named.stop_sequence) == ("stop_sequence", "##")
    left = convert(_completion({"content": "a##"}), stop_sequences=["##"])
    assert (left.stop_reason, left.stop_sequence) == ("stop_sequence", "##")
    stripped = convert(_completion({"content": "a"}), stop_sequences=["##"])
    assert (stripped.stop_reason, stripped.stop_sequence) == ("end_turn", None)


def test_only_choice_zero_is_used() -> None:
    body = _completion({"content": "zero"})
    body["choices"].insert(0, {"index": 1, "message": {"content": "one"}, "finish_reason": "stop"})
    assert [b.text for b in convert(body).content if b.type == "text"] == ["zero"]


def test_recorded_openai_error_body_becomes_an_anthropic_error() -> None:
    body = (FIXTURES / "openai-error-model-not-found.json").read_bytes()
    status, error_type, message = anthropic_error_from_openai(404, body)
    assert (status, error_type) == (404, "not_found_error")
    assert message == json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
    ],
)
def test_openai_error_status_maps_to_anthropic_type(status: int, error_type: str) -> None:
    body = json.dumps({"error": {"message": "boom"}}).encode()
    assert anthropic_error_from_openai(status, body) == (status, error_type, "boom")


def test_non_json_error_body_keeps_its_text() -> None:
    assert (
        anthropic_error_from_openai(502, b"<html>Bad gateway</html>")[2]
        == "<html>Bad gateway</html>"
    )


def test_stream_error_type_comes_from_the_error_object() -> None:
    assert openai_stream_error({"error": {"message": "m", "status_code": 400}}) == (
        "invalid_request_error",
        "m",
    )
    assert openai_stream_error({"error": {"message": "m", "code": "rate_limit_exceeded"}}) == (
        "rate_limit_error",
        "m",
    )
    assert openai_stream_error({"error": "plain"}) == ("api_error", "plain")
