"""Properties of the stream conversion that must hold for any input split or interleaving."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.translate.sse import Event, SSEDecoder
from gateway.translate.stream import StreamConverter
from tests.unit.test_translate_stream import STREAMS, anthropic_final, check_grammar, convert

RECORDINGS = {path.name: path.read_bytes() for path in STREAMS}
WHOLE = {name: convert(raw)[1] for name, raw in RECORDINGS.items()}


def convert_in_pieces(raw: bytes, cuts: list[int]) -> bytes:
    converter = StreamConverter(model="claude-via-proxy", provider="fixture-provider")
    decoder, frames = SSEDecoder(), []
    bounds = [0, *sorted(set(cuts)), len(raw)]
    for start, end in itertools.pairwise(bounds):
        frames += [f for event in decoder.feed(raw[start:end]) for f in converter.feed(event)]
    frames += [f for event in decoder.close() for f in converter.feed(event)]
    return b"".join(frames + converter.close())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(RECORDINGS)), data=st.data())
def test_any_byte_split_of_a_recording_yields_the_same_frames(name: str, data: Any) -> None:
    raw = RECORDINGS[name]
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts")
    assert convert_in_pieces(raw, cuts) == WHOLE[name]


def _fragments(arguments: str, data: Any) -> list[str]:
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(len(arguments) - 1, 1)), max_size=6))))
    bounds = [0, *[c for c in cuts if c < len(arguments)], len(arguments)]
    return [arguments[a:b] for a, b in itertools.pairwise(bounds)]


def _tool_chunk(index: int, call: dict[str, Any]) -> Event:
    delta = {"tool_calls": [{"index": index, **call}]}
    body = {"id": "chatcmpl-p", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return Event("message", json.dumps(body), b"")


json_values = st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none())
tool_inputs = st.lists(
    st.dictionaries(st.text(max_size=5), json_values, max_size=4), min_size=1, max_size=4
)


@settings(max_examples=200, deadline=None)
@given(inputs=tool_inputs, data=st.data())
def test_any_interleaving_of_parallel_tool_call_fragments_keeps_every_call_intact(
    inputs: list[dict[str, Any]], data: Any
) -> None:
    queues = []
    for index, tool_input in enumerate(inputs):
        pieces = _fragments(json.dumps(tool_input), data)
        head = {"id": f"call_{index}", "function": {"name": f"tool{index}", "arguments": pieces[0]}}
        queues.append([head] + [{"function": {"arguments": p}} for p in pieces[1:]])
    events = []
    while any(queues):
        index = data.draw(st.sampled_from([i for i, q in enumerate(queues) if q]))
        events.append(_tool_chunk(index, queues[index].pop(0)))
    finish = {
        "id": "chatcmpl-p",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
    }
    events += [Event("message", json.dumps(finish), b""), Event("message", "[DONE]", b"")]
    converter = StreamConverter(model="m")
    frames = b"".join(f for event in events for f in converter.feed(event))
    check_grammar(frames)
    blocks = anthropic_final(frames).content
    assert {b.id: b.input for b in blocks if b.type == "tool_use"} == {
        f"call_{i}": tool_input for i, tool_input in enumerate(inputs)
    }
