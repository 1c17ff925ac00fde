"""Shared fixtures: a live proxy on loopback, a fake upstream, configuration builders."""

from __future__ import annotations

import os
import socket

import pytest


def require_services() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "") not in ("", "0")


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def skip_or_fail(reason: str) -> None:
    """Missing services skip a test locally, and fail it when REQUIRE_SERVICES is set."""
    if require_services():
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        return
    for item in items:
        if item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.skip(reason="the PostgreSQL pass runs postgres tests"))


@pytest.fixture(scope="session", autouse=True)
def _postgres_reachable() -> None:
    from django.conf import settings

    db = settings.DATABASES["default"]
    if "postgresql" in db["ENGINE"]:
        host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
        if not service_available(host, port):
            skip_or_fail(f"PostgreSQL at {host}:{port}")
