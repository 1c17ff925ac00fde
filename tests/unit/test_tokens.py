import json
from pathlib import Path

from gateway.tokens import estimate_input_tokens
from gateway.translate.sse import SSEDecoder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"


def test_estimate_is_close_to_the_recorded_count_of_the_same_request() -> None:
    # request and answer of the same recorded exchange (see PROVENANCE.md)
    request = json.loads((FIXTURES / "anthropic-request-prefill-stop-sequences.json").read_text())
    stream = (FIXTURES / "anthropic-stream-stop-sequence.sse").read_bytes()
    recorded = json.loads(SSEDecoder().feed(stream)[0].data)["message"]["usage"]["input_tokens"]
    estimate = estimate_input_tokens(request)
    assert abs(estimate - recorded) <= 0.25 * recorded


def test_images_and_tools_count() -> None:
    text_only = {"messages": [{"role": "user", "content": "hello there"}]}
    with_image = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hello there"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 9000},
                    },
                ],
            }
        ]
    }
    with_tools = {**text_only, "tools": [{"name": "t", "input_schema": {"type": "object"}}]}
    base = estimate_input_tokens(text_only)
    assert estimate_input_tokens(with_image) == base + 1600, "image data is not text"
    assert estimate_input_tokens(with_tools) > base
