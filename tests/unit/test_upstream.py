import pytest

from gateway.auth import presented_key
from gateway.upstream import UpstreamError, join_url, parse_retry_after


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"),
        ("https://openrouter.ai/api/v1", "https://openrouter.ai/api/v1/messages"),
        ("https://api.z.ai/api/anthropic", "https://api.z.ai/api/anthropic/v1/messages"),
        ("http://localhost:11434/v1/", "http://localhost:11434/v1/messages"),
    ],
)
def test_upstream_url_joining(endpoint: str, url: str) -> None:
    assert join_url(endpoint, "messages") == url


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("status", "message", "failover"),
    [
        (529, "", True),
        (429, "", True),
        (401, "", True),
        (404, "", True),
        (413, "", True),
        (400, "max_tokens too big", False),
        (422, "bad", False),
        (400, "prompt is too long: 300000 tokens > 200000 maximum", True),
    ],
)
def test_which_statuses_fail_over(status: int, message: str, failover: bool) -> None:
    assert UpstreamError("http_status", message, status=status).failover is failover


def test_client_key_from_either_header() -> None:
    assert presented_key({b"x-api-key": b"k1"}) == "k1"
    assert presented_key({b"authorization": b"Bearer k2"}) == "k2"
    assert presented_key({b"authorization": b"Basic k3"}) is None
    assert presented_key({}) is None
