"""GET /live.json and the terminal monitor (`manage.py monitor`) that reads it."""

from __future__ import annotations

import httpx
from textual.widgets import DataTable, Static

from gateway.management.commands.monitor import MonitorApp, http_fetcher
from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy

BODY = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _one_request(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    builders.route(builders.provider("first", upstream.url), "model-a", alias="c*")
    key = builders.client_key()
    proxy.reload()
    response = httpx.post(f"{proxy.url}/v1/messages", json=BODY, headers={"x-api-key": key})
    assert response.status_code == 200


def test_live_json_shows_the_route_and_the_request(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    _one_request(proxy, upstream)
    response = httpx.get(f"{proxy.url}/live.json")
    assert response.status_code == 200
    feed = response.json()
    route = next(r for r in feed["routes"] if (r["provider"], r["model"]) == ("first", "model-a"))
    assert route["requests_per_min"] == 1
    assert route["circuit"] == "closed"
    assert route["in_flight"] == 0
    assert route["error_rate"] == 0
    assert feed["totals"]["requests_hour"] == 1
    [recent] = feed["recent"]
    assert recent["provider"] == "first"
    assert recent["model"] == "model-a"
    assert recent["status"] == 200
    assert recent["outcome"] == "ok"
    assert recent["output_tokens"] > 0
    assert recent["ttft_ms"] is not None and recent["duration_ms"] > 0


def test_live_json_token_is_required_when_set(proxy: LiveProxy, settings) -> None:
    settings.METRICS_TOKEN = "metrics-secret"
    assert httpx.get(f"{proxy.url}/live.json").status_code == 401
    wrong = httpx.get(f"{proxy.url}/live.json", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = httpx.get(f"{proxy.url}/live.json", headers={"authorization": "Bearer metrics-secret"})
    assert ok.status_code == 200
    assert set(ok.json()) >= {"routes", "totals", "recent"}


async def test_monitor_shows_route_and_recent_request_then_quits(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(_one_request, thread_sensitive=False)(proxy, upstream)
    app = MonitorApp(http_fetcher(proxy.url), interval=30)
    async with app.run_test() as pilot:
        await app.poll()
        await pilot.pause()
        routes = app.query_one("#routes", DataTable)
        row = routes.get_row("first/model-a")
        assert row[:4] == ["first", "model-a", "1", "0"]
        assert row[7] == "closed"
        recent = app.query_one("#recent", DataTable)
        assert recent.row_count == 1
        assert recent.get_row_at(0)[1:5] == ["first", "model-a", "200", "ok"]
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


async def test_monitor_reports_an_unreachable_server_and_keeps_going() -> None:
    from tests.live import free_port

    app = MonitorApp(http_fetcher(f"http://127.0.0.1:{free_port()}", timeout=0.5), interval=30)
    async with app.run_test() as pilot:
        await pilot.pause()
        status = str(app.query_one("#status", Static).render())
        assert "unreachable" in status
        assert app.is_running
        await pilot.press("q")
    assert not app.is_running
