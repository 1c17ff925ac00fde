"""The live overview: staff only, pushed over a websocket, fed by real proxied traffic."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from dashboard.consumers import LiveConsumer
from gateway.runtime import Runtime
from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy

pytestmark = pytest.mark.django_db(transaction=True)


def staff_user(staff: bool = True):
    users = get_user_model()
    return users.objects.create_user(
        "watcher" if staff else "guest", password="pw-tests-0nly", is_staff=staff
    )


def test_overview_page_needs_a_staff_login() -> None:
    anonymous = Client().get("/dashboard/")
    assert anonymous.status_code == 302 and "/dashboard/login/" in anonymous["Location"]
    guest = Client()
    guest.force_login(staff_user(staff=False))
    assert guest.get("/dashboard/").status_code == 403
    staff = Client()
    staff.force_login(staff_user())
    page = staff.get("/dashboard/")
    assert page.status_code == 200 and b'ws-connect="/dashboard/ws/live/"' in page.content


async def _communicate(user) -> tuple[bool, str | None]:
    runtime = Runtime()
    app = LiveConsumer.as_asgi()
    communicator = WebsocketCommunicator(app, "/dashboard/ws/live/")
    communicator.scope["user"] = user
    communicator.scope["gateway_runtime"] = runtime
    connected, _ = await communicator.connect()
    first = await communicator.receive_from(timeout=2) if connected else None
    await communicator.disconnect()
    for task in runtime._tasks:
        task.cancel()
    return connected, first


def test_websocket_refuses_anonymous_and_non_staff() -> None:
    assert asyncio.run(_communicate(AnonymousUser())) == (False, None)
    assert asyncio.run(_communicate(staff_user(staff=False))) == (False, None)


def test_websocket_sends_the_overview_to_staff_at_once() -> None:
    connected, first = asyncio.run(_communicate(staff_user()))
    assert connected
    assert 'id="live"' in first and 'hx-swap-oob="true"' in first


def _session_cookie(proxy: LiveProxy) -> dict[str, str]:
    client = httpx.Client(base_url=proxy.url)
    login = client.get("/dashboard/login/")
    token = login.cookies["csrftoken"]
    client.post(
        "/dashboard/login/",
        data={"username": "watcher", "password": "pw-tests-0nly", "csrfmiddlewaretoken": token},
        headers={"referer": f"{proxy.url}/dashboard/login/"},
    )
    return dict(client.cookies)


async def _watch_for(proxy: LiveProxy, cookies: dict, marker: str) -> str:
    async with (
        aiohttp.ClientSession(cookies=cookies) as session,
        session.ws_connect(f"{proxy.url}/dashboard/ws/live/", headers={"Origin": proxy.url}) as ws,
    ):
        async with asyncio.timeout(5):
            async for message in ws:
                if marker in message.data:
                    return message.data
    raise AssertionError("never seen")


def test_a_proxied_request_appears_on_the_live_overview(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    staff_user()
    builders.route(builders.provider("acme", upstream.url), "acme-model", alias="claude-*")
    key = builders.client_key()
    proxy.reload()
    cookies = _session_cookie(proxy)
    body = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert (
        httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key}).status_code
        == 200
    )
    html = asyncio.run(_watch_for(proxy, cookies, 'data-route="acme/acme-model"'))
    row = html.split('data-route="acme/acme-model"')[1].split("</tr>")[0]
    assert '<td data-col="rpm">1</td>' in row
    assert json.dumps("closed")[1:-1] in row
