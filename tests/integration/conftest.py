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
def proxy(transactional_db: None) -> Iterator[LiveProxy]:
    live = LiveProxy().start()
    try:
        yield live
    finally:
        live.stop()
