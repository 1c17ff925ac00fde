"""Headless Debian Chromium driven by Playwright, against a live proxy on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import skip_or_fail
from tests.integration.conftest import proxy, upstream  # noqa: F401  (shared fixtures)

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Per module: Playwright's sync API keeps an event loop running in the main thread
    while it is open, which later tests' sync-to-async calls cannot share."""
    if not os.path.exists(CHROMIUM):
        skip_or_fail(f"Debian chromium at {CHROMIUM} (make test installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the tests' own ORM
    # calls are still plain synchronous ones (the documented workaround for Django).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def staff(transactional_db: None) -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(
        "admin", password="browser-pw-123", is_staff=True, is_superuser=True
    )
    return "admin", "browser-pw-123"
