import json

import pytest

from gateway.body import replace_model


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"a","messages":[]}',
        b'{\n  "model": "a",\n  "x": 1\n}',
        b'{"messages":[{"model":"a"}],"meta":{"model":"a"},"model":"a"}',
        b'{"x":"\\"model\\": \\"a\\"","model" : "a","y":"model"}',
    ],
)
def test_only_the_top_level_model_changes(raw: bytes) -> None:
    out = replace_model(raw, "a", "vendor/b-1")
    expected = json.loads(raw)
    expected["model"] = "vendor/b-1"
    assert json.loads(out) == expected
    assert len(out) == len(raw) + len("vendor/b-1") - 1, "nothing else was re-serialised"


def test_non_ascii_bytes_elsewhere_are_untouched() -> None:
    raw = '{"model": "a", "messages": [{"content": "🤖 héllo"}]}'.encode()
    assert (
        replace_model(raw, "a", "b")
        == '{"model": "b", "messages": [{"content": "🤖 héllo"}]}'.encode()
    )


def test_same_model_returns_the_same_bytes() -> None:
    raw = b'{"model": "a"}'
    assert replace_model(raw, "a", "a") is raw
