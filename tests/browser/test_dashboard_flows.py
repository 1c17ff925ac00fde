"""What an operator does in a real browser: log in, watch traffic arrive live."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy


def log_in(page: Page, proxy: LiveProxy, staff: tuple[str, str]) -> None:
    page.goto(f"{proxy.url}/dashboard/")
    expect(page).to_have_url(f"{proxy.url}/dashboard/login/?next=/dashboard/")
    page.get_by_label("Username").fill(staff[0])
    page.get_by_label("Password").fill(staff[1])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Live overview")).to_be_visible()


def test_wrong_password_is_refused(page: Page, proxy: LiveProxy, staff: tuple[str, str]) -> None:
    page.goto(f"{proxy.url}/dashboard/login/")
    page.get_by_label("Username").fill(staff[0])
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")


def test_a_request_through_the_proxy_appears_live_on_the_overview(
    page: Page, proxy: LiveProxy, upstream: FakeUpstream, staff: tuple[str, str]
) -> None:
    builders.route(builders.provider("acme", upstream.url), "acme-model", alias="claude-*")
    key = builders.client_key()
    proxy.reload()
    log_in(page, proxy, staff)
    row = page.locator('tr[data-route="acme/acme-model"]')
    expect(row.locator('td[data-col="rpm"]')).to_have_text("0")

    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}).is_success
    # no reload: the websocket push updates the row within a couple of seconds
    expect(row.locator('td[data-col="rpm"]')).to_have_text("1", timeout=5_000)
    expect(page.locator('dd[data-total="requests_hour"]')).to_have_text("1")


def test_the_page_is_readable_on_a_phone(browser, proxy: LiveProxy, staff: tuple[str, str]) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        log_in(page, proxy, staff)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, "nothing forces the phone to scroll sideways"
    finally:
        context.close()
