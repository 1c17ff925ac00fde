import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.translate.request import (
    ConversionError,
    OpenAIOptions,
    reasoning_effort,
    server_tool_reason,
    to_openai_request,
)
from tests.openai_request_check import problems

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REQUESTS = sorted(FIXTURES.glob("claude-code/*-request.json")) + sorted(
    FIXTURES.glob("anthropic/anthropic-request-*.json")
)
EVERY_OPTION = OpenAIOptions(
    max_tokens_field="max_completion_tokens",
    max_output_tokens=4096,
    reasoning=True,
    send_reasoning_content=True,
    strict_tool_schema=True,
)
REASONING_CONTENT = {"messages.reasoning_content"}


def load(name: str) -> dict[str, Any]:
    path = FIXTURES / ("claude-code" if name.endswith("-request.json") else "anthropic") / name
    return json.loads(path.read_text())


def convert(payload: dict[str, Any], stream: bool = True, **options: Any) -> dict[str, Any]:
    return to_openai_request(payload, "gpt-test", stream=stream, options=OpenAIOptions(**options))


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


def user(*content: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(content)}


def assistant(*content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": list(content)}


def tool_use(call_id: str, name: str = "get_file") -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {"path": "a"}}


def request(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": list(messages), **fields}


PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


# -- every recorded request --------------------------------------------------------------


def test_the_fixture_set_is_complete() -> None:
    names = {p.name for p in REQUESTS}
    assert "headers.json" not in names
    assert {"main-request.json", "count-tokens-request.json"} <= names
    assert len(REQUESTS) == 12


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "no-stream"])
@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_every_recorded_request_converts_to_a_valid_openai_request(
    path: Path, stream: bool
) -> None:
    body = to_openai_request(json.loads(path.read_text()), "gpt-test", stream=stream)
    assert problems(body) == []


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_every_recorded_request_stays_valid_with_every_option_on(path: Path) -> None:
    body = to_openai_request(json.loads(path.read_text()), "m", stream=True, options=EVERY_OPTION)
    assert problems(body, allow_extra=REASONING_CONTENT) == []


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_the_payload_is_left_unmodified(path: Path) -> None:
    payload = json.loads(path.read_text())
    before = copy.deepcopy(payload)
    to_openai_request(payload, "m", stream=True, options=EVERY_OPTION)
    assert payload == before


# -- system --------------------------------------------------------------------------------


def test_system_blocks_become_one_leading_system_message() -> None:
    body = convert(load("anthropic-request-cache-control-system-array.json"))
    assert body["messages"][0] == {
        "role": "system",
        "content": "You help generate concise summaries of news articles and blog posts that"
        " user sends you.",
    }


def test_system_role_message_inside_messages_stays_in_place() -> None:
    payload = load("main-request.json")
    body = convert(payload)
    assert roles(body) == ["system", "user", "system"]
    assert body["messages"][2]["content"] == payload["messages"][1]["content"][0]["text"]


def test_claude_code_billing_header_is_left_out_of_the_system_prompt() -> None:
    system = convert(load("main-request.json"))["messages"][0]["content"]
    assert "x-anthropic-billing-header" not in system
    assert system.startswith("You are a Claude agent, built on Anthropic's Claude Agent SDK.\n")


# -- content -------------------------------------------------------------------------------


def test_text_only_user_content_becomes_a_plain_string() -> None:
    body = convert(load("tool-result-request.json"))
    first = body["messages"][1]["content"]
    assert isinstance(first, str)
    assert first.endswith("</system-reminder>\n\nrun echo hello-from-tool")


def test_empty_text_blocks_are_dropped() -> None:
    payload = request(user({"type": "text", "text": ""}, {"type": "text", "text": "hi"}))
    assert convert(payload)["messages"] == [{"role": "user", "content": "hi"}]


def test_base64_image_becomes_a_data_url_part_before_the_text() -> None:
    payload = load("anthropic-request-image-base64.json")
    data = payload["messages"][0]["content"][0]["source"]["data"]
    content = convert(payload)["messages"][0]["content"]
    assert content == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        {"type": "text", "text": "Describe image in three words"},
    ]


def test_image_given_as_an_anthropic_file_id_cannot_be_converted() -> None:
    image = {"type": "image", "source": {"type": "file", "file_id": "file_011"}}
    with pytest.raises(ConversionError, match=r"messages\.0\.content\.0: an image given as"):
        convert(request(user(image)))


def test_plain_text_document_becomes_titled_text() -> None:
    source = {"type": "text", "media_type": "text/plain", "data": "The grass is green."}
    document = {"type": "document", "source": source, "title": "Facts"}
    body = convert(request(user(document, {"type": "text", "text": "Colour?"})))
    assert body["messages"][0]["content"] == "[document: Facts]\nThe grass is green.\nColour?"


def test_base64_pdf_becomes_a_file_part() -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}
    body = convert(request(user({"type": "document", "source": source, "title": "spec"})))
    assert body["messages"][0]["content"] == [
        {
            "type": "file",
            "file": {"filename": "spec.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        }
    ]
    assert problems(body) == []


def test_pdf_by_url_becomes_a_note_with_the_url() -> None:
    source = {"type": "url", "url": "https://example.com/a.pdf"}
    body = convert(request(user({"type": "document", "source": source})))
    assert (
        body["messages"][0]["content"]
        == "[document]\n(PDF at https://example.com/a.pdf; not attached)"
    )


def test_unknown_block_type_is_a_conversion_error() -> None:
    with pytest.raises(ConversionError, match=r"messages\.0\.content\.0: hologram blocks"):
        convert(request(user({"type": "hologram"})))


def test_cache_control_appears_nowhere_in_the_output() -> None:
    for name in ("anthropic-request-cache-control-system-array.json", "tool-result-request.json"):
        payload = load(name)
        assert "cache_control" in json.dumps(payload)
        assert "cache_control" not in json.dumps(convert(payload))


# -- assistant turns and tools -------------------------------------------------------------


def test_tool_use_becomes_a_tool_call_with_json_arguments() -> None:
    body = convert(load("tool-result-request.json"))
    call = body["messages"][3]["tool_calls"][0]
    assert call["type"] == "function"
    assert call["function"]["name"] == "Bash"
    assert json.loads(call["function"]["arguments"]) == {
        "command": "echo hello-from-tool",
        "description": "Print a test string",
    }


def test_assistant_text_beside_tool_calls_goes_to_content() -> None:
    body = convert(load("tool-result-request.json"))
    assert body["messages"][3]["content"] == "Running the command."


def test_assistant_with_only_tool_calls_has_null_content() -> None:
    body = convert(load("anthropic-request-thinking-tool-result.json"))
    assert body["messages"][1]["content"] is None


def test_tool_result_follows_the_assistant_tool_calls_with_matching_id() -> None:
    body = convert(load("tool-result-request.json"))
    assert roles(body)[-2:] == ["assistant", "tool"]
    assert body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": body["messages"][-2]["tool_calls"][0]["id"],
        "content": "hello-from-tool",
    }


def test_parallel_tool_results_follow_in_their_order() -> None:
    body = convert(load("anthropic-request-tools-tool-result.json"))
    ids = [c["id"] for c in body["messages"][1]["tool_calls"]]
    assert roles(body) == ["user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in body["messages"][2:]] == ids
    assert [m["content"] for m in body["messages"][2:]] == ["Charles", "Sammy"]


def test_rest_of_a_user_turn_follows_its_tool_results() -> None:
    payload = load("anthropic-request-tool-result-blocks-url-image.json")
    body = convert(payload)
    assert roles(body) == ["user", "assistant", "tool", "user"]
    assert body["messages"][2]["content"] == "File attached"
    assert body["messages"][3]["content"] == [
        {"type": "image_url", "image_url": {"url": "https://www.gstatic.com/webp/gallery3/1.png"}}
    ]


def test_images_inside_a_tool_result_move_to_a_user_message_naming_the_call() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {"type": "text", "text": "here it is"},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        ],
    }
    body = convert(
        request(user({"type": "text", "text": "go"}), assistant(tool_use("toolu_1")), user(result))
    )
    assert roles(body) == ["user", "assistant", "tool", "user"]
    assert body["messages"][2]["content"] == (
        "here it is\n[1 attachment(s) from this result follow in the next message]"
    )
    assert body["messages"][3]["content"] == [
        {"type": "text", "text": "Attachments returned by get_file (call toolu_1):"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]
    assert problems(body) == []


def test_error_tool_result_is_prefixed_with_error() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": "no such file",
        "is_error": True,
    }
    body = convert(request(assistant(tool_use("t")), user(result)))
    assert body["messages"][-1]["content"] == "Error: no such file"


def test_empty_tool_result_still_has_content() -> None:
    body = convert(
        request(assistant(tool_use("t")), user({"type": "tool_result", "tool_use_id": "t"}))
    )
    assert body["messages"][-1]["content"] == "(no output)"


def test_tool_reference_in_a_tool_result_becomes_a_note() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "t",
        "content": [{"type": "tool_reference", "tool_name": "WebFetch"}],
    }
    body = convert(request(assistant(tool_use("t", "ToolSearch")), user(result)))
    assert body["messages"][-1]["content"] == "[tool WebFetch is available]"


def test_prefilled_assistant_message_stays_last() -> None:
    body = convert(load("anthropic-request-prefill-stop-sequences.json"))
    assert body["messages"][-1] == {"role": "assistant", "content": "```python"}


# -- thinking --------------------------------------------------------------------------------


def test_thinking_is_dropped_by_default() -> None:
    body = convert(load("anthropic-request-thinking-tool-result.json"))
    assert "reasoning_content" not in json.dumps(body)
    assert "signature" not in json.dumps(body)


def test_thinking_replays_as_reasoning_content_when_asked() -> None:
    payload = load("anthropic-request-thinking-tool-result.json")
    body = convert(payload, send_reasoning_content=True)
    turn = body["messages"][1]
    assert turn["reasoning_content"] == payload["messages"][1]["content"][0]["thinking"]
    assert turn["tool_calls"][0]["id"] == "toolu_01825dXWLSoJwCst1qTsiWdb"
    assert problems(body, allow_extra=REASONING_CONTENT) == []


def test_redacted_thinking_is_dropped_and_an_emptied_turn_with_it() -> None:
    redacted = {"type": "redacted_thinking", "data": "EmwKAhgB"}
    payload = request(
        user({"type": "text", "text": "a"}),
        assistant(redacted),
        user({"type": "text", "text": "b"}),
    )
    assert roles(convert(payload, send_reasoning_content=True)) == ["user", "user"]


# -- tools and tool_choice ---------------------------------------------------------------------


def test_tools_become_functions_with_input_schema_as_parameters() -> None:
    payload = load("anthropic-request-thinking-tool-result.json")
    assert convert(payload)["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "fixed_version",
                "description": "Return a fixed test version string",
                "parameters": {"properties": {}, "type": "object"},
            },
        }
    ]


def test_deferred_tool_is_sent_without_defer_loading() -> None:
    payload = load("main-request.json")
    body = convert(payload)
    assert [t["function"]["name"] for t in body["tools"]] == [t["name"] for t in payload["tools"]]
    assert "defer_loading" not in json.dumps(body)


def test_anthropic_only_tool_keys_and_strict_are_dropped() -> None:
    tool = {
        "name": "f",
        "input_schema": {"type": "object"},
        "strict": True,
        "cache_control": {"type": "ephemeral"},
        "input_examples": [{}],
        "eager_input_streaming": True,
        "allowed_callers": ["direct"],
    }
    assert convert(request(user({"type": "text", "text": "x"}), tools=[tool]))["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_maps_to_its_openai_form(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    body = convert(request(user({"type": "text", "text": "x"}), tools=tools, tool_choice=choice))
    assert body["tool_choice"] == expected
    assert "parallel_tool_calls" not in body


def test_disable_parallel_tool_use_sets_parallel_tool_calls_false() -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    body = convert(request(user({"type": "text", "text": "x"}), tools=tools, tool_choice=choice))
    assert body["parallel_tool_calls"] is False


def test_tool_choice_is_not_sent_without_tools() -> None:
    choice = {"type": "any", "disable_parallel_tool_use": True}
    body = convert(request(user({"type": "text", "text": "x"}), tools=[], tool_choice=choice))
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & body.keys()


# -- strict (Gemini) tool schemas --------------------------------------------------------------


def test_strict_schema_removes_keywords_gemini_rejects_from_claude_code_tools() -> None:
    text = json.dumps(convert(load("main-request.json"), strict_tool_schema=True)["tools"])
    for keyword in ("$schema", "additionalProperties", "propertyNames", "exclusiveMinimum"):
        assert f'"{keyword}"' not in text


def test_strict_schema_translates_what_has_a_gemini_equivalent() -> None:
    schema = {
        "type": "object",
        "properties": {
            "mode": {"const": "fast"},
            "count": {"type": ["integer", "null"], "exclusiveMinimum": 0},
            "tags": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
            "level": {"enum": ["a", "b", None]},
            "size": {"enum": [1, 2]},
            "when": {"type": "string", "format": "uri"},
        },
        "required": ["mode", "ghost"],
    }
    tools = [{"name": "f", "input_schema": schema}]
    body = convert(
        request(user({"type": "text", "text": "x"}), tools=tools), strict_tool_schema=True
    )
    assert body["tools"][0]["function"]["parameters"] == {
        "type": "object",
        "properties": {
            "mode": {"enum": ["fast"]},
            "count": {"type": "integer", "nullable": True, "minimum": 0},
            "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
            "level": {"enum": ["a", "b"], "nullable": True},
            "size": {},
            "when": {"type": "string"},
        },
        "required": ["mode"],
    }


def test_schemas_are_passed_through_untouched_without_strict() -> None:
    payload = load("main-request.json")
    body = convert(payload)
    assert body["tools"][1]["function"]["parameters"] == payload["tools"][1]["input_schema"]


# -- sampling, limits, metadata ------------------------------------------------------------------


def test_stop_sequences_become_stop() -> None:
    assert convert(load("anthropic-request-prefill-stop-sequences.json"))["stop"] == ["```"]


def test_only_the_first_four_stop_sequences_are_sent() -> None:
    payload = request(user({"type": "text", "text": "x"}), stop_sequences=list("abcdef"))
    assert convert(payload)["stop"] == ["a", "b", "c", "d"]


def test_temperature_and_top_p_are_copied_and_top_k_is_dropped() -> None:
    payload = request(user({"type": "text", "text": "x"}), temperature=0.2, top_p=0.9, top_k=5)
    body = convert(payload)
    assert (body["temperature"], body["top_p"]) == (0.2, 0.9)
    assert "top_k" not in body


def test_max_tokens_is_clamped_to_the_route_limit() -> None:
    assert convert(load("main-request.json"), max_output_tokens=32000)["max_tokens"] == 32000


def test_max_tokens_can_go_as_max_completion_tokens() -> None:
    body = convert(load("main-request.json"), max_tokens_field="max_completion_tokens")
    assert body["max_completion_tokens"] == 128000
    assert "max_tokens" not in body


def test_unknown_max_tokens_field_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens_field"):
        OpenAIOptions(max_tokens_field="max_output_tokens")


def test_short_metadata_user_id_becomes_user() -> None:
    payload = request(user({"type": "text", "text": "x"}), metadata={"user_id": "u-42"})
    assert convert(payload)["user"] == "u-42"


def test_long_user_id_goes_as_a_stable_64_character_hash() -> None:
    payload = load("main-request.json")
    first, second = convert(payload)["user"], convert(load("tool-result-request.json"))["user"]
    assert first == second
    assert len(first) == 64
    assert "device_id" not in first


def test_streaming_asks_for_usage() -> None:
    body = convert(load("main-request.json"), stream=True)
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})


def test_non_streaming_sends_no_stream_fields() -> None:
    body = convert(load("nonstream-fallback-request.json"), stream=False)
    assert not {"stream", "stream_options"} & body.keys()


def test_only_openai_fields_leave_a_claude_code_request() -> None:
    body = convert(load("interactive-auto-mode-request.json"), reasoning=True)
    assert set(body) == {
        "model",
        "messages",
        "max_tokens",
        "user",
        "tools",
        "reasoning_effort",
        "stream",
        "stream_options",
    }


def test_drop_fields_are_removed_last() -> None:
    body = convert(load("main-request.json"), drop_fields=("user", "stream_options", "absent"))
    assert not {"user", "stream_options"} & body.keys()
    assert body["stream"] is True


# -- reasoning_effort ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (4095, "low"), (4096, "medium"), (16384, "high")]
)
def test_thinking_budget_sets_reasoning_effort(budget: int, effort: str) -> None:
    payload = request(thinking={"type": "enabled", "budget_tokens": budget})
    assert reasoning_effort(payload) == effort


@pytest.mark.parametrize(
    ("fields", "effort"),
    [
        ({"thinking": {"type": "adaptive"}}, "medium"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
        ({"output_config": {"effort": "xhigh"}}, "high"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, "low"),
        ({}, None),
    ],
)
def test_thinking_mode_and_effort_set_reasoning_effort(
    fields: dict[str, Any], effort: str | None
) -> None:
    assert reasoning_effort(request(**fields)) == effort


def test_reasoning_effort_is_sent_only_to_reasoning_models() -> None:
    payload = load("anthropic-request-thinking-tool-result.json")
    assert "reasoning_effort" not in convert(payload)
    assert convert(payload, reasoning=True)["reasoning_effort"] == "low"


def test_claude_code_effort_becomes_reasoning_effort() -> None:
    assert convert(load("main-request.json"), reasoning=True)["reasoning_effort"] == "medium"


# -- server tools ------------------------------------------------------------------------------


def test_web_search_needs_an_anthropic_provider() -> None:
    payload = request(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}])
    assert server_tool_reason(payload) == "needs server tool web_search (Anthropic providers only)"
    with pytest.raises(ConversionError, match="needs server tool web_search"):
        convert(payload)


def test_anthropic_defined_client_tool_needs_an_anthropic_provider() -> None:
    payload = request(tools=[{"type": "bash_20250124", "name": "bash"}])
    assert server_tool_reason(payload) == (
        "needs Anthropic-defined tool bash (Anthropic providers only)"
    )


def test_mcp_connector_needs_an_anthropic_provider() -> None:
    payload = request(mcp_servers=[{"type": "url", "url": "https://mcp.test", "name": "m"}])
    assert server_tool_reason(payload) == "needs MCP connector servers (Anthropic providers only)"


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_recorded_requests_need_no_server_tool(path: Path) -> None:
    assert server_tool_reason(json.loads(path.read_text())) is None


def test_custom_typed_tool_is_an_ordinary_function() -> None:
    payload = request(tools=[{"type": "custom", "name": "f", "input_schema": {"type": "object"}}])
    assert server_tool_reason(payload) is None


# -- the checker itself ------------------------------------------------------------------------


def valid_body() -> dict[str, Any]:
    return convert(load("tool-result-request.json"))


def test_checker_catches_an_unknown_field() -> None:
    body = valid_body()
    body["messages"][1]["cache_control"] = {"type": "ephemeral"}
    body["top_k"] = 5
    assert problems(body) == ["top_k: unknown field", "messages[1].cache_control: unknown field"]


def test_checker_catches_a_bad_role() -> None:
    body = valid_body()
    body["messages"][1]["role"] = "human"
    assert "messages[1].role: 'human' is not a valid role" in problems(body)


def test_checker_catches_an_unmatched_tool_call_id() -> None:
    body = valid_body()
    body["messages"][-1]["tool_call_id"] = "toolu_other"
    assert problems(body) == [
        "messages[4]: tool_call_id 'toolu_other' answers no tool call of the assistant message"
        " directly before it",
        "messages[3].tool_calls: 'toolu_cap_090cd7f9e46040848bbf' has no tool message answering it",
    ]


def test_checker_catches_a_tool_message_that_does_not_follow_its_assistant() -> None:
    body = valid_body()
    body["messages"].insert(4, {"role": "user", "content": "interrupt"})
    assert len(problems(body)) == 2


def test_checker_accepts_named_vendor_fields_only() -> None:
    body = convert(load("anthropic-request-thinking-tool-result.json"), send_reasoning_content=True)
    assert problems(body) == ["messages[1].reasoning_content: unknown field"]
    assert problems(body, allow_extra=REASONING_CONTENT) == []


def test_anthropic_tools_are_dropped_when_asked_and_a_dangling_tool_choice_goes() -> None:
    payload = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "news?"}],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
            {"name": "Read", "input_schema": {"type": "object"}},
        ],
        "tool_choice": {"type": "tool", "name": "web_search"},
    }
    body = to_openai_request(
        payload, "gpt-x", stream=False, options=OpenAIOptions(drop_anthropic_tools=True)
    )
    assert [t["function"]["name"] for t in body["tools"]] == ["Read"]
    assert body.get("tool_choice") in (None, "auto")
    assert problems(body) == []
