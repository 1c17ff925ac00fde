"""StreamConverter: every recorded OpenAI-dialect stream, replayed and checked against the
official SDKs (the `anthropic` accumulator on our output, the `openai` accumulator on the
recording), plus a strict checker of the Anthropic event grammar."""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from gateway.translate.sse import Event, SSEDecoder
from gateway.translate.stream import StreamConverter
from gateway.translate.thinking import synthetic_signature

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures/openai"
STREAMS = sorted(FIXTURES.glob("*.sse"))
ERROR_STREAMS = {
    "groq-stream-error-event.sse": ("invalid_request_error", "Tool call validation failed"),
    "openrouter-stream-error-midstream-length.sse": ("invalid_request_error", "Token limit"),
}
PROVIDER = "fixture-provider"
BLOCK_DELTAS = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}


def convert(raw: bytes, **options: Any) -> tuple[StreamConverter, bytes]:
    """Decode `raw` as the proxy does and convert it; returns the converter and its output."""
    converter = StreamConverter(**{"model": "claude-via-proxy", "provider": PROVIDER, **options})
    decoder = SSEDecoder()
    frames = [f for event in decoder.feed(raw) + decoder.close() for f in converter.feed(event)]
    return converter, b"".join(frames + converter.close())


@dataclass
class _Grammar:
    seen: list[str] = field(default_factory=list)
    open_block: tuple[int, str] | None = None
    next_index: int = 0
    signed: bool = False


def _check_block_event(state: _Grammar, name: str, data: dict[str, Any]) -> None:
    if name == "content_block_start":
        assert state.open_block is None, "a block started while another was open"
        assert data["index"] == state.next_index, "block indices must run 0..n"
        block = data["content_block"]
        if block["type"] == "tool_use":
            assert block["id"] and block["name"] and block["input"] == {}
        state.open_block, state.signed = (data["index"], block["type"]), False
        state.next_index += 1
    elif name == "content_block_delta":
        assert state.open_block is not None and data["index"] == state.open_block[0]
        assert not state.signed, "nothing may follow a thinking block's signature"
        assert data["delta"]["type"] in BLOCK_DELTAS[state.open_block[1]]
        state.signed = data["delta"]["type"] == "signature_delta"
    else:
        assert state.open_block is not None and data["index"] == state.open_block[0]
        assert state.open_block[1] != "thinking" or state.signed, "thinking needs a signature"
        state.open_block = None


def check_grammar(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Assert the exact Anthropic streaming grammar; an `error` event may end it anywhere."""
    assert b"[DONE]" not in frames
    events = [(e.name, json.loads(e.data)) for e in SSEDecoder().feed(frames)]
    assert events, "no output at all"
    state = _Grammar()
    for position, (name, data) in enumerate(events):
        assert data["type"] == name
        if name == "error":
            assert position == len(events) - 1, "nothing may follow an error event"
            return events
        expected_first = {0: "message_start", 1: "ping"}.get(position)
        assert expected_first is None or name == expected_first
        if name.startswith("content_block_"):
            assert state.seen[-1] != "message_delta"
            _check_block_event(state, name, data)
        elif name == "message_delta":
            assert state.open_block is None and "message_delta" not in state.seen
        elif name == "message_stop":
            assert state.seen[-1] == "message_delta" and position == len(events) - 1
        else:
            assert position < 2, f"unexpected {name} at {position}"
        state.seen.append(name)
    assert state.seen[-1] == "message_stop", "a stream must end with message_stop or error"
    return events


def _transport(body: bytes) -> httpx2.MockTransport:
    headers = {"content-type": "text/event-stream"}
    return httpx2.MockTransport(lambda request: httpx2.Response(200, headers=headers, content=body))


def anthropic_final(frames: bytes) -> anthropic.types.Message:
    """Our output as the official Anthropic SDK accumulates it (MessageStream)."""
    http = httpx2.Client(transport=_transport(frames))
    client = anthropic.Anthropic(api_key="k", base_url="http://proxy.test", http_client=http)
    messages: Any = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model="m", max_tokens=8, messages=messages) as stream:
        return stream.get_final_message()


@dataclass
class OpenAIResult:
    message: Any
    finish_reason: str | None
    usage: Any


def openai_final(raw: bytes) -> OpenAIResult:
    """The recording as the official OpenAI SDK accumulates it (ChatCompletionStreamState).

    The SDK lets a later `"usage": null` chunk (OpenAI's moderation chunk) overwrite the
    usage, so the last non-null usage among the SDK-parsed chunks is kept here.
    """
    http = httpx2.Client(transport=_transport(raw))
    client = openai.OpenAI(api_key="k", base_url="http://upstream.test/v1", http_client=http)
    state, usage = ChatCompletionStreamState(), None
    messages: Any = [{"role": "user", "content": "hi"}]
    with warnings.catch_warnings():  # Mistral's content arrays are not in the SDK's types
        warnings.simplefilter("ignore")
        for parsed in client.chat.completions.create(model="m", messages=messages, stream=True):
            usage = parsed.usage or usage
            # raised for finish_reason "length"; the snapshot is complete regardless
            with contextlib.suppress(openai.LengthFinishReasonError):
                state.handle_chunk(parsed)
    choice = state.current_completion_snapshot.choices[0]
    return OpenAIResult(choice.message, choice.finish_reason, usage)


def _mistral_thinking(raw: bytes) -> str:
    """Mistral's `{"type": "thinking"}` content parts, which the OpenAI SDK cannot accumulate."""
    texts = []
    for event in SSEDecoder().feed(raw):
        if event.data.startswith("{"):
            for choice in event.json()["choices"]:
                content = choice["delta"].get("content")
                for part in content if isinstance(content, list) else []:
                    texts += [t["text"] for t in part.get("thinking", [])]
    return "".join(texts)


def expected_thinking(result: OpenAIResult, raw: bytes) -> str:
    extra = result.message.model_extra or {}
    details = "".join(d.get("text") or "" for d in extra.get("reasoning_details") or [])
    sources = (extra.get("reasoning_content"), extra.get("reasoning"), details)
    return next((s for s in sources if s), "") or _mistral_thinking(raw)


def expected_usage(usage: Any) -> tuple[int, int, int]:
    if usage is None:
        return (0, 0, 0)
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    return (usage.prompt_tokens - cached, usage.completion_tokens, cached)


OPENAI_TO_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: p.name)
def test_recorded_stream_converts_to_valid_grammar(path: Path) -> None:
    converter, frames = convert(path.read_bytes())
    events = check_grammar(frames)
    if path.name in ERROR_STREAMS:
        assert events[-1][0] == "error" and converter.error is not None
    else:
        assert events[-1][0] == "message_stop" and converter.finished


@pytest.mark.parametrize(
    "path", [p for p in STREAMS if p.name not in ERROR_STREAMS], ids=lambda p: p.name
)
def test_recorded_stream_agrees_with_both_official_sdks(path: Path) -> None:
    raw = path.read_bytes()
    converter, frames = convert(raw)
    ours, theirs = anthropic_final(frames), openai_final(raw)
    blocks = ours.content
    text = "".join(b.text for b in blocks if b.type == "text")
    assert text == (theirs.message.content or "") + (theirs.message.refusal or "")
    assert "".join(b.thinking for b in blocks if b.type == "thinking") == expected_thinking(
        theirs, raw
    )
    assert {b.signature for b in blocks if b.type == "thinking"} <= {synthetic_signature(PROVIDER)}
    tools = [(b.id, b.name, b.input) for b in blocks if b.type == "tool_use"]
    calls = theirs.message.tool_calls or []
    assert tools == [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls]
    assert ours.stop_reason == OPENAI_TO_ANTHROPIC_STOP[theirs.finish_reason or ""]
    assert ours.stop_reason == converter.stop_reason
    usage = (ours.usage.input_tokens, ours.usage.output_tokens, ours.usage.cache_read_input_tokens)
    assert usage == expected_usage(theirs.usage)
    assert (converter.usage.input_tokens, converter.usage.output_tokens) == usage[:2]


@pytest.mark.parametrize("name", sorted(ERROR_STREAMS))
def test_recorded_midstream_error_becomes_an_anthropic_error_event(name: str) -> None:
    converter, frames = convert((FIXTURES / name).read_bytes())
    error_type, message_start = ERROR_STREAMS[name]
    assert converter.error is not None and converter.error[0] == error_type
    assert converter.error[1].startswith(message_start)
    assert not converter.finished and converter.content_started
    with pytest.raises(anthropic.APIStatusError) as raised:
        anthropic_final(frames)
    body: Any = raised.value.body
    assert body["error"] == {"type": error_type, "message": converter.error[1]}


def test_cached_prompt_tokens_are_reported_as_cache_reads() -> None:
    _, frames = convert((FIXTURES / "openai-stream-cached-tokens-usage.sse").read_bytes())
    usage = anthropic_final(frames).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (1144 - 1024, 1024)


def test_mistral_thinking_content_parts_become_a_thinking_block_before_the_text() -> None:
    _, frames = convert((FIXTURES / "mistral-magistral-stream-thinking-chunks.sse").read_bytes())
    kinds = [b.type for b in anthropic_final(frames).content]
    assert kinds == ["thinking", "text"]


def test_groq_usage_in_the_finish_chunk_ends_the_message_at_once() -> None:
    raw = (FIXTURES / "groq-stream-tool-call-reasoning-xgroq.sse").read_bytes()
    converter = StreamConverter(model="m")
    events = SSEDecoder().feed(raw)
    finish = next(i for i, e in enumerate(events) if '"finish_reason":"tool_calls"' in e.data)
    for event in events[: finish + 1]:
        converter.feed(event)
    assert converter.finished and converter.usage.input_tokens == 304


# Hand-built chunks: one behaviour each.


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, Any] | None = None,
    index: int = 0,
    chunk_id: str = "chatcmpl-hand",
    **extra: Any,
) -> Event:
    choice = {"index": index, "delta": delta or {}, "finish_reason": finish, **extra}
    body = {"id": chunk_id, "object": "chat.completion.chunk", "model": "up", "choices": [choice]}
    if delta is None and finish is None and not extra:
        body["choices"] = []
    if usage is not None:
        body["usage"] = usage
    return Event("message", json.dumps(body), b"")


def tool(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> Any:
    function = {"arguments": arguments} if name is None else {"name": name, "arguments": arguments}
    call: dict[str, Any] = {"index": index, "function": function}
    if call_id is not None:
        call["id"] = call_id
    return {"tool_calls": [call]}


DONE = Event("message", "[DONE]", b"")
USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 7,
    "prompt_tokens_details": {"cached_tokens": 10},
}


def run(events: list[Event], **options: Any) -> tuple[StreamConverter, bytes]:
    converter = StreamConverter(**{"model": "m", "provider": PROVIDER, **options})
    frames = [f for event in events for f in converter.feed(event)]
    return converter, b"".join(frames + converter.close())


def test_interleaved_parallel_tool_calls_become_separate_tool_use_blocks() -> None:
    events = [
        chunk(tool(0, '{"city": "Pa', "call_a", "weather")),
        chunk(tool(1, '{"city": ', "call_b", "weather")),
        chunk(tool(1, '"Rome"}')),
        chunk(tool(0, 'ris"}')),
        chunk(finish="tool_calls"),
        DONE,
    ]
    converter, frames = run(events)
    check_grammar(frames)
    blocks = anthropic_final(frames).content
    assert [(b.type, b.id, b.input) for b in blocks if b.type == "tool_use"] == [
        ("tool_use", "call_a", {"city": "Paris"}),
        ("tool_use", "call_b", {"city": "Rome"}),
    ]
    assert converter.stop_reason == "tool_use"


def test_sequential_tool_calls_stream_the_second_as_soon_as_the_first_is_complete() -> None:
    converter = StreamConverter(model="m")
    converter.feed(chunk(tool(0, '{"a": 1}', "call_a", "f")))
    frames = converter.feed(chunk(tool(1, '{"b"', "call_b", "g")))
    names = [SSEDecoder().feed(f)[0].name for f in frames]
    assert names == ["content_block_stop", "content_block_start", "content_block_delta"]


def test_missing_and_empty_tool_ids_are_generated_deterministically() -> None:
    events = [
        chunk(tool(0, "{}", "", "first")),
        chunk(tool(1, "{}", None, "second")),
        chunk(finish="tool_calls"),
        DONE,
    ]
    _, frames = run(events)
    ids = [b.id for b in anthropic_final(frames).content]
    assert all(i.startswith("toolu_") for i in ids) and len(set(ids)) == 2
    assert run(events)[1] == frames


def test_tool_calls_without_an_index_are_told_apart_by_their_ids() -> None:
    first = {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]}
    second = {"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": "{}"}}]}
    _, frames = run([chunk(first), chunk(second), chunk(finish="tool_calls"), DONE])
    assert [(b.id, b.name) for b in anthropic_final(frames).content] == [("c1", "f"), ("c2", "g")]


def test_stream_ending_without_finish_reason_is_an_error_not_a_success() -> None:
    converter, frames = run([chunk({"role": "assistant", "content": "Hel"})])
    events = check_grammar(frames)
    assert events[-1][0] == "error" and converter.error is not None
    assert not converter.finished and converter.stop_reason is None


def test_done_without_finish_reason_is_an_error() -> None:
    converter, frames = run([chunk({"content": "Hel"}), DONE])
    assert check_grammar(frames)[-1][0] == "error" and converter.error is not None


def test_error_chunk_before_any_content_leaves_content_started_false() -> None:
    error = {"error": {"message": "Rate limit exceeded", "code": 429}}
    converter, frames = run(
        [chunk({"role": "assistant", "content": ""}), Event("message", json.dumps(error), b"")]
    )
    assert converter.error == ("rate_limit_error", "Rate limit exceeded")
    assert not converter.content_started
    assert check_grammar(frames)[-1][0] == "error"


def test_error_event_as_the_first_event_produces_only_the_error() -> None:
    body = json.dumps({"error": {"message": "overloaded", "type": "server_error"}})
    converter, frames = run([Event("error", body, b"")])
    assert [e.name for e in SSEDecoder().feed(frames)] == ["error"]
    assert converter.error == ("api_error", "overloaded") and not converter.content_started


def test_usage_only_trailing_chunk_is_waited_for_and_reported() -> None:
    converter = StreamConverter(model="m", input_tokens_hint=25)
    converter.feed(chunk({"content": "Hi"}))
    assert converter.feed(chunk({}, finish="stop")) == []  # held for the usage chunk
    frames = converter.feed(chunk(usage=USAGE))
    assert converter.finished
    delta = json.loads(SSEDecoder().feed(b"".join(frames))[-2].data)
    assert delta["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 10,
        "output_tokens": 7,
    }
    assert converter.feed(DONE) == [] and converter.close() == []


def test_message_start_carries_the_input_token_hint() -> None:
    converter = StreamConverter(model="claude-x", input_tokens_hint=321)
    start = json.loads(
        SSEDecoder().feed(b"".join(converter.feed(chunk({"role": "assistant"}))))[0].data
    )
    assert start["message"]["usage"]["input_tokens"] == 321
    assert start["message"]["model"] == "claude-x" and start["message"]["id"] == "msg_chatcmpl-hand"
    assert not converter.content_started


def test_without_usage_the_message_ends_at_done() -> None:
    converter = StreamConverter(model="m", input_tokens_hint=9)
    converter.feed(chunk({"content": "Hi"}))
    assert converter.feed(chunk({}, finish="stop")) == []
    assert converter.feed(DONE) and converter.finished and converter.usage.input_tokens == 9


def test_only_choice_zero_is_converted_when_n_is_greater_than_one() -> None:
    events = [
        chunk({"content": "zero"}),
        chunk({"content": "one"}, index=1),
        chunk({}, finish="length", index=1),
        chunk({"content": "!"}),
        chunk({}, finish="stop"),
        DONE,
    ]
    converter, frames = run(events)
    assert anthropic_final(frames).content[0].text == "zero!"
    assert converter.stop_reason == "end_turn"


def test_reasoning_becomes_a_signed_thinking_block_before_the_text() -> None:
    events = [
        chunk({"reasoning_content": "hmm"}),
        chunk({"content": "ok"}),
        chunk({}, finish="stop"),
        DONE,
    ]
    _, frames = run(events)
    thinking, text = anthropic_final(frames).content
    assert thinking.type == "thinking" and thinking.thinking == "hmm"
    assert thinking.signature == synthetic_signature(PROVIDER) and text.type == "text"


def test_content_started_turns_true_with_the_first_text_delta() -> None:
    converter = StreamConverter(model="m")
    converter.feed(chunk({"role": "assistant", "content": ""}))
    assert not converter.content_started
    converter.feed(chunk({"content": "x"}))
    assert converter.content_started


def test_provider_named_stop_sequence_gives_stop_sequence() -> None:
    events = [chunk({"content": "a"}), chunk({}, finish="stop", stop_reason="END"), DONE]
    converter, _ = run(events, stop_sequences=["END"])
    assert (converter.stop_reason, converter.stop_sequence) == ("stop_sequence", "END")


def test_text_ending_with_a_stop_sequence_gives_stop_sequence() -> None:
    events = [chunk({"content": "x ```"}), chunk({}, finish="stop"), DONE]
    converter, _ = run(events, stop_sequences=["```", "zzz"])
    assert (converter.stop_reason, converter.stop_sequence) == ("stop_sequence", "```")


def test_refusal_is_text_and_content_filter_is_refusal() -> None:
    events = [chunk({"refusal": "I can't help."}), chunk({}, finish="content_filter"), DONE]
    converter, frames = run(events)
    assert anthropic_final(frames).content[0].text == "I can't help."
    assert converter.stop_reason == "refusal"


def test_stop_with_tool_calls_is_tool_use() -> None:
    converter, _ = run([chunk(tool(0, "{}", "c", "f")), chunk({}, finish="stop"), DONE])
    assert converter.stop_reason == "tool_use"


def test_malformed_chunk_is_an_error() -> None:
    converter, _ = run([Event("message", "{not json", b"")])
    assert converter.error is not None and converter.error[0] == "api_error"


def test_chunks_after_the_end_are_ignored() -> None:
    converter, frames = run(
        [chunk({"content": "a"}), chunk({}, finish="stop", usage=USAGE), chunk({"content": "late"})]
    )
    assert converter.finished and b"late" not in frames
