from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def proxy(request: pytest.FixtureRequest, transactional_db: None) -> Iterator[LiveProxy]:
    """The proxy as `serve` runs it; `@both_relay_modes` also runs a test with relays
    that go through ASGI `send`, as they do under daphne."""
    live = LiveProxy(getattr(request, "param", "push")).start()
    try:
        yield live
    finally:
        live.stop()
