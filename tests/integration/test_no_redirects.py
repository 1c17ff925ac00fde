"""An upstream redirect is never followed: the request (and its key) stays with the
provider that was configured, and the redirect counts as that provider failing."""

from __future__ import annotations

import httpx

from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy

HELLO = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_a_redirecting_provider_is_failed_over_not_followed(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    with FakeUpstream() as elsewhere:
        moved = {"location": f"{elsewhere.url}/v1/messages"}
        upstream.script("redirects", Script(status=307, headers=moved))
        builders.route(builders.provider("first", upstream.url), "redirects", alias="c*", weight=9)
        builders.route(builders.provider("second", upstream.url), "healthy", alias="c*")
        key = builders.client_key()
        proxy.reload()
        response = httpx.post(f"{proxy.url}/v1/messages", json=HELLO, headers={"x-api-key": key})
        assert response.status_code == 200
        assert [r.model for r in upstream.requests] == ["redirects", "healthy"]
        assert elsewhere.requests == []  # the key never went to the redirect's target
