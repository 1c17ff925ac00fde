"""What an operator does in a real browser: log in, watch traffic arrive live."""

from __future__ import annotations

import time

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


def wait_for_config(proxy: LiveProxy) -> None:
    """The running proxy's once-a-second poll picks up the dashboard's changes."""
    from gateway.models import ConfigVersion

    wanted = ConfigVersion.current()
    deadline = time.monotonic() + 3
    while proxy.runtime.snapshot.version < wanted:
        assert time.monotonic() < deadline, "the proxy did not reload within 3 s"
        time.sleep(0.05)


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


def test_create_a_provider_and_model_then_serve_traffic_through_it(
    page: Page, proxy: LiveProxy, upstream: FakeUpstream, staff: tuple[str, str]
) -> None:
    log_in(page, proxy, staff)
    page.get_by_role("link", name="Providers").click()
    page.get_by_role("link", name="Add a provider").click()
    page.get_by_label("Name").fill("browser-made")
    page.get_by_label("Endpoint").fill(upstream.url)
    page.get_by_label("API key").fill("sk-browser-canary-key-000111")
    page.get_by_role("button", name="Save provider").click()
    expect(page.get_by_text("browser-made").first).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("sk-browser-canary-key-000111")

    page.get_by_role("link", name="Add a model").click()
    page.get_by_label("Name").fill("made-in-browser")
    page.get_by_label("Alias").fill("browser-*")
    page.get_by_role("button", name="Save model").click()
    expect(page.get_by_text("made-in-browser").first).to_be_visible()

    key = builders.client_key()
    wait_for_config(proxy)
    body = {"model": "browser-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    sent = upstream.requests[-1]
    assert sent.model == "made-in-browser"
    assert sent.header("x-api-key") == "sk-browser-canary-key-000111"


def test_create_a_key_see_it_once_use_it_and_find_the_request(
    page: Page, proxy: LiveProxy, upstream: FakeUpstream, staff: tuple[str, str]
) -> None:
    builders.route(builders.provider("acme", upstream.url), "acme-model", alias="claude-*")
    proxy.reload()
    log_in(page, proxy, staff)
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("The new key").input_value()
    assert key.startswith("sk-ap-")

    page.reload()  # shown once: never again
    expect(page.locator("body")).not_to_contain_text(key)
    expect(page.get_by_text("laptop").first).to_be_visible()

    wait_for_config(proxy)
    page.get_by_role("link", name="Overview").click()
    row = page.locator('tr[data-route="acme/acme-model"]')
    expect(row.locator('td[data-col="rpm"]')).to_have_text("0")
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}).is_success
    expect(row.locator('td[data-col="rpm"]')).to_have_text("1", timeout=5_000)

    proxy.flush_logs()
    page.get_by_role("link", name="Requests").click()
    page.get_by_label("Requested model").fill("claude-x")
    page.get_by_role("button", name="Search").click()
    results = page.locator("tr[data-request]")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("acme")
    results.first.get_by_role("link").first.click()
    expect(page.locator("body")).to_contain_text("acme-model")
    expect(page.locator("body")).to_contain_text("Won")
