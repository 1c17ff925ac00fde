import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.translate.anthropic_body import AnthropicOptions, adapt, filter_betas
from gateway.translate.thinking import is_synthetic_signature, synthetic_signature

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REQUESTS = sorted(FIXTURES.glob("claude-code/*-request.json")) + sorted(
    FIXTURES.glob("anthropic/anthropic-request-*.json")
)
DEFAULT = AnthropicOptions()
HOIST = AnthropicOptions(hoist_system_messages=True)


def load(name: str) -> dict[str, Any]:
    path = FIXTURES / ("claude-code" if name.endswith("-request.json") else "anthropic") / name
    return json.loads(path.read_text())


def synthetic_thinking(text: str = "Let me check.") -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": synthetic_signature("deepseek")}


def tool_loop(*assistant_content: dict[str, Any]) -> dict[str, Any]:
    """A tool round trip whose assistant turn came from an OpenAI-dialect provider."""
    call = {"type": "tool_use", "id": "call_1", "name": "Read", "input": {"path": "a"}}
    return {
        "model": "claude-x",
        "max_tokens": 100,
        "thinking": {"type": "adaptive"},
        "messages": [
            {"role": "user", "content": "read a"},
            {"role": "assistant", "content": [*assistant_content, call]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "A"}],
            },
        ],
    }


# -- untouched bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.name)
def test_recorded_requests_need_no_change_by_default(path: Path) -> None:
    assert adapt(json.loads(path.read_text()), DEFAULT) is None


def test_real_thinking_is_kept() -> None:
    payload = load("anthropic-request-thinking-tool-result.json")
    assert not is_synthetic_signature(payload["messages"][1]["content"][0]["signature"])
    assert adapt(payload, DEFAULT) is None


def test_hoisting_without_system_messages_changes_nothing() -> None:
    assert adapt(load("anthropic-request-tools-tool-result.json"), HOIST) is None


def test_dropping_a_field_the_body_lacks_changes_nothing() -> None:
    assert adapt(load("main-request.json"), AnthropicOptions(drop_fields=("safeguards",))) is None


# -- synthetic thinking ------------------------------------------------------------------------


def test_synthetic_thinking_is_removed_from_assistant_messages() -> None:
    payload = tool_loop(synthetic_thinking(), {"type": "text", "text": "Reading."})
    body = adapt(payload, DEFAULT)
    assert body is not None
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use"]
    assert body["messages"][0] is payload["messages"][0], "unchanged messages are shared"
    assert body["thinking"] == {"type": "adaptive"}


def test_real_thinking_beside_synthetic_thinking_is_kept() -> None:
    real = {"type": "thinking", "thinking": "Hmm.", "signature": "EoQDCm0IDhgCKkCD"}
    body = adapt(tool_loop(real, synthetic_thinking()), DEFAULT)
    assert body is not None
    assert body["messages"][1]["content"][0] == real
    assert len(body["messages"][1]["content"]) == 2


def test_assistant_message_left_empty_is_removed() -> None:
    payload = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [synthetic_thinking()]},
            {"role": "user", "content": "again"},
        ],
    }
    body = adapt(payload, DEFAULT)
    assert body is not None
    assert [m["role"] for m in body["messages"]] == ["user", "user"]


def test_adapt_leaves_the_payload_unmodified() -> None:
    payload = tool_loop(synthetic_thinking())
    payload["system"] = "be brief"
    payload["messages"].insert(1, {"role": "system", "content": "late rule"})
    before = copy.deepcopy(payload)
    adapt(payload, AnthropicOptions(hoist_system_messages=True, drop_fields=("thinking",)))
    assert payload == before


# -- hoisting ----------------------------------------------------------------------------------


def test_hoisted_system_message_joins_the_end_of_system_blocks() -> None:
    payload = load("main-request.json")
    body = adapt(payload, HOIST)
    assert body is not None
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["system"][:3] == payload["system"], "existing blocks, cache_control included"
    assert body["system"][3:] == payload["messages"][1]["content"]


def test_hoisted_string_system_message_becomes_a_text_block_after_system_blocks() -> None:
    payload = load("tool-result-request.json")
    body = adapt(payload, HOIST)
    assert body is not None
    assert body["system"][-1] == {"type": "text", "text": payload["messages"][1]["content"]}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_hoisting_into_a_string_system_keeps_a_string_in_order() -> None:
    payload = {
        "model": "claude-x",
        "max_tokens": 100,
        "system": "be brief",
        "messages": [
            {"role": "system", "content": "first"},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "second"},
        ],
    }
    body = adapt(payload, HOIST)
    assert body is not None
    assert body["system"] == "be brief\n\nfirst\n\nsecond"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


# -- dropped fields ------------------------------------------------------------------------------


def test_drop_fields_are_removed() -> None:
    payload = load("interactive-auto-mode-request.json")
    body = adapt(payload, AnthropicOptions(drop_fields=("safeguards", "context_management")))
    assert body is not None
    assert set(payload) - set(body) == {"safeguards", "context_management"}
    assert body["messages"] is payload["messages"]


# -- thinking signatures -------------------------------------------------------------------------


def test_synthetic_signatures_are_recognisable() -> None:
    assert synthetic_signature("groq") == "ap-synth:groq"
    assert is_synthetic_signature(synthetic_signature("groq"))
    assert not is_synthetic_signature("EoQDCm0IDhgCKkCD")
    assert not is_synthetic_signature(None)


# -- anthropic-beta ------------------------------------------------------------------------------

CLAUDE_CODE_BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
    "effort-2025-11-24"
)


def test_listed_betas_are_dropped() -> None:
    kept = filter_betas(CLAUDE_CODE_BETAS, ("context-management-2025-06-27",), None)
    assert kept == "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24"


def test_beta_patterns_drop_every_match() -> None:
    assert filter_betas(CLAUDE_CODE_BETAS, ("*-2025-*",), None) == "claude-code-20250219"


def test_only_allowed_betas_are_kept() -> None:
    allowed = ("interleaved-thinking-*", "effort-2025-11-24")
    kept = filter_betas(CLAUDE_CODE_BETAS, (), allowed)
    assert kept == "interleaved-thinking-2025-05-14,effort-2025-11-24"


def test_beta_list_is_tidied() -> None:
    assert filter_betas(" a , ,b,a ", (), None) == "a,b"


def test_nothing_left_means_no_header() -> None:
    assert filter_betas("a,b", ("a",), ("a",)) is None


def test_tool_ids_made_up_by_another_provider_are_rewritten_consistently() -> None:
    payload = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "functions.read:0", "name": "read", "input": {}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "functions.read:0", "content": "ok"}
                ],
            },
        ],
    }
    body = adapt(payload, AnthropicOptions())
    assert body is not None
    assert body["messages"][1]["content"][0]["id"] == "functions_read_0"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "functions_read_0"
    assert payload["messages"][1]["content"][0]["id"] == "functions.read:0", "input untouched"
