"""The Anthropic relay passes runs of text deltas on without parsing them: whatever the
chunking, the client gets the recording's bytes, the watch the same usage and stop reason,
and the commit point comes with the first output, never earlier and never later."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.relay import AnthropicRelay
from gateway.streamwatch import StreamWatch
from gateway.translate.sse import SSEDecoder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"
RECORDINGS = {p.name: p.read_bytes() for p in sorted(FIXTURES.glob("anthropic-stream-*.sse"))}


def new_relay() -> AnthropicRelay:
    response: Any = SimpleNamespace(content=SimpleNamespace(iter_any=lambda: iter(())))
    return AnthropicRelay(response)


def relay_in_pieces(raw: bytes, cuts: list[int]) -> tuple[bytes, int | None, AnthropicRelay]:
    """The bytes sent on, the end offset of the chunk that first said "output", the relay."""
    relay = new_relay()
    out, committed_at = [], None
    bounds = [0, *sorted(set(cuts)), len(raw)]
    for start, end in itertools.pairwise(bounds):
        data, content = relay._take(raw[start:end])
        out.append(data)
        if content and committed_at is None:
            committed_at = end
    return b"".join(out), committed_at, relay


def first_output_end(raw: bytes) -> int:
    """Where the first event that counts as output ends, by the parsing watch alone."""
    decoder, watch, offset = SSEDecoder(), StreamWatch(), 0
    for block in raw.split(b"\n\n"):
        offset += len(block) + 2
        if any(watch.observe(event) for event in decoder.feed(block + b"\n\n")):
            return offset
    raise AssertionError("the recording has no output")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(RECORDINGS)), data=st.data())
def test_any_split_relays_the_same_bytes_usage_and_commit_point(name: str, data: Any) -> None:
    raw = RECORDINGS[name]
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40), label="cuts")
    whole_out, _, whole = relay_in_pieces(raw, [])
    out, committed_at, relay = relay_in_pieces(raw, cuts)
    assert out == whole_out == raw.rstrip(b"\n") + b"\n\n"
    assert relay.watch == whole.watch
    assert whole.watch.finished and whole.watch.usage.output_tokens > 0
    # the chunk that completes the first output event commits, not one before it
    first = first_output_end(raw)
    assert committed_at is not None
    ends = sorted({c for c in cuts if 0 < c < len(raw)} | {len(raw)})
    assert committed_at == next(end for end in ends if end >= first)


def test_a_run_of_deltas_is_passed_on_and_counts_as_output() -> None:
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    relay = new_relay()
    assert relay._take(delta * 3) == (delta * 3, True)
    assert relay.watch == StreamWatch()


def test_text_that_mentions_an_event_is_parsed_not_trusted() -> None:
    """`event: ` inside the text makes the cheap check give up, not misjudge."""
    tricky = b'event: content_block_delta\ndata: {"text":"event: message_stop"}\n\n'
    stop = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    relay = new_relay()
    data, content = relay._take(tricky + stop)
    assert (data, content) == (tricky + stop, True)
    assert relay.watch.finished


def test_an_error_event_after_deltas_is_seen() -> None:
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    error = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
    relay = new_relay()
    relay._take(delta + error)  # the error event is cut in two
    relay._take(b'"message":"busy"}}\n\n')
    assert (relay.watch.error_type, relay.watch.error_message) == ("overloaded_error", "busy")
