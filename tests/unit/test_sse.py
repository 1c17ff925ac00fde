from pathlib import Path

from gateway.translate.sse import SSEDecoder

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures/anthropic/anthropic-stream-text.sse"


def test_events_split_anywhere_decode_the_same() -> None:
    raw = FIXTURE.read_bytes()
    whole = SSEDecoder().feed(raw)
    for size in (1, 7, 64):
        decoder = SSEDecoder()
        events = [e for i in range(0, len(raw), size) for e in decoder.feed(raw[i : i + size])]
        assert events == whole
    assert whole[0].name == "message_start"
    assert b"".join(e.raw for e in whole).strip() == raw.strip()


def test_crlf_and_cr_line_endings_are_accepted() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(b"event: a\r\ndata: 1\r")
    events += decoder.feed(b"\n\r\nevent: b\rdata: 2\r\r")
    events += decoder.close()  # a final CR could have been the start of CRLF
    assert [(e.name, e.data) for e in events] == [("a", "1"), ("b", "2")]


def test_comments_and_multiline_data() -> None:
    events = SSEDecoder().feed(b": keep-alive\n\ndata: x\ndata: y\n\n")
    assert [(e.name, e.data) for e in events] == [("message", "x\ny")]


def test_unterminated_last_event_is_flushed_on_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: done\ndata: {}") == []
    assert [e.name for e in decoder.close()] == ["done"]
