"""Configuration nudges (gateway.config_sync): reloads folded together, Redis never fatal."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

import pytest
from pytest_django.fixtures import Settings

from gateway.config_sync import ConfigNudges, announce
from tests.live import free_port


class Holder:
    """Stands in for SnapshotHolder: counts checks, each held until the test releases it."""

    def __init__(self) -> None:
        self.checks = 0
        self.release = asyncio.Event()

    async def check(self, executor: Executor) -> bool:
        self.checks += 1
        await self.release.wait()
        self.release.clear()
        return True


async def test_nudges_heard_during_a_reload_fold_into_one_more_check() -> None:
    holder = Holder()
    nudges = ConfigNudges(holder, executor=None)  # type: ignore[arg-type]
    nudges.heard(b"7")
    await asyncio.sleep(0)
    for version in (b"8", b"9", None):
        nudges.heard(version)
    holder.release.set()
    await asyncio.sleep(0.01)
    holder.release.set()
    await asyncio.sleep(0.01)
    assert holder.checks == 2
    nudges.heard(b"10")
    await asyncio.sleep(0.01)
    assert holder.checks == 3
    await nudges.stop()


def test_announcing_without_redis_is_logged_and_never_raises(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="gateway.config_sync"):
        announce(12)
    assert "configuration version 12 saved, but not announced" in caplog.text


def test_announcing_is_skipped_without_redis_url(settings: Settings) -> None:
    settings.REDIS_URL = ""
    announce(12)  # nothing to reach, nothing to wait for
