"""No secret in any output: a busy scenario with canary secrets, then every output scanned.

Canaries: a literal provider key (stored encrypted), a provider key from the environment,
a credential in a provider's extra headers, the client's own key, and a wrong key a
client sends. Some are key-shaped (sk-...) and some are not, since real provider keys come
in many shapes. The traffic succeeds, fails over, fails outright, and meets upstreams that
echo the key they were sent in their error messages (some do). Then: every response
(status line, headers, body), every log record, the JSONL file, every request-log and
attempt row, the dashboard's pages, /metrics, /live.json and the exported config.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from gateway.models import Attempt, RequestLog
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy

LITERAL = "canary-literal-provider-key-4f1d2a"  # not key-shaped
FROM_ENV = "sk-canary-env-provider-key-9b8c7d6e5f"
HEADER = "canary-header-credential-11aa22bb"
WRONG = "sk-ap-canary-wrong-client-key-000000000"
CANARIES = (LITERAL, FROM_ENV, HEADER, WRONG)


CONFIG = """\
providers:
  lit:
    endpoint: {url}
    apiKey: {literal}
    headers: {{x-auth-token: {header}}}
  env:
    endpoint: {url}
    apiKey: env.CANARY_PROVIDER_KEY
models:
  - {{name: lit-ok, provider: lit, alias: "ok-*"}}
  - {{name: lit-echo-401, provider: lit, alias: "failover-*", weight: 9}}
  - {{name: env-ok, provider: env, alias: "failover-*", weight: 1}}
  - {{name: env-echo-401, provider: env, alias: "doomed-*", weight: 9}}
  - {{name: lit-echo-500, provider: lit, alias: "doomed-*", weight: 1}}
  - {{name: env-echo-400, provider: env, alias: "bad-request-*"}}
"""


def echoing(status: int, secret: str) -> Script:
    message = f"invalid api key: {secret} (request refused)"
    body = {"type": "error", "error": {"type": "authentication_error", "message": message}}
    return Script(status=status, error_body=body)


def request(proxy: LiveProxy, key: str, model: str, stream: bool = False) -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 5,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return httpx.post(f"{proxy.url}/v1/messages", json=body, headers={"x-api-key": key})


def traffic(proxy: LiveProxy, upstream: FakeUpstream, client_key: str) -> list[str]:
    """Every kind of outcome; returns every response as text (status, headers, body)."""
    config = CONFIG.format(url=upstream.url, literal=LITERAL, header=HEADER)
    path = Path(tempfile.mkdtemp()) / "config.yaml"
    path.write_text(config)
    call_command("import_config", str(path), stdout=io.StringIO())
    upstream.script("lit-echo-401", echoing(401, LITERAL))
    upstream.script("env-echo-401", echoing(401, FROM_ENV))
    upstream.script("lit-echo-500", echoing(500, f"{LITERAL} / {HEADER}"))
    upstream.script("env-echo-400", echoing(400, FROM_ENV))
    proxy.reload()
    responses = []
    for model, stream in [
        ("ok-1", False),
        ("ok-1", True),
        ("failover-1", False),
        ("failover-1", True),
        ("doomed-1", False),
        ("doomed-1", True),
        ("bad-request-1", False),
        ("bad-request-1", True),
    ]:
        responses.append(request(proxy, client_key, model, stream))
    responses.append(request(proxy, WRONG, "ok-1"))
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 502, 502, 400, 400, 401]
    return [f"{r.status_code}\n{json.dumps(dict(r.headers))}\n{r.text}" for r in responses]


def dashboard_pages() -> str:
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops", is_staff=True))
    pages = ["/dashboard/", "/dashboard/requests/", "/dashboard/providers/", "/dashboard/keys/"]
    pages += [f"/dashboard/requests/{row.pk}/" for row in RequestLog.objects.all()]
    texts = [staff.get(url).content.decode() for url in pages]
    assert all("<html" in text for text in texts)
    return "\n".join(texts)


def test_no_canary_in_any_output(
    transactional_db: None,
    upstream: FakeUpstream,
    settings: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CANARY_PROVIDER_KEY", FROM_ENV)
    settings.LOG_FILE = str(tmp_path / "requests.jsonl")
    settings.LOG_BODIES = True
    caplog.set_level(logging.DEBUG)
    proxy = LiveProxy().start()
    try:
        client_key = builders.client_key()
        responses = traffic(proxy, upstream, client_key)
        proxy.flush_logs()
        metrics = httpx.get(f"{proxy.url}/metrics").text
        live = httpx.get(f"{proxy.url}/live.json").text
    finally:
        proxy.stop()
    # the providers really got their keys: the canaries were in play
    sent = {r.header("x-api-key") for r in upstream.requests}
    assert {LITERAL, FROM_ENV} <= sent
    assert HEADER in {r.header("x-auth-token") for r in upstream.requests}

    exported = io.StringIO()
    call_command("export_config", stdout=exported)
    rows = json.dumps(
        [list(RequestLog.objects.values()), list(Attempt.objects.values())], default=str
    )
    outputs = {
        "responses": "\n".join(responses),
        "log records": "\n".join(
            f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
        ),
        "jsonl": (tmp_path / "requests.jsonl").read_text(),
        "request log rows": rows,
        "dashboard": dashboard_pages(),
        "metrics": metrics,
        "live.json": live,
        "export": exported.getvalue(),
    }
    assert RequestLog.objects.count() == 9
    leaks = [
        (where, canary)
        for where, text in outputs.items()
        for canary in (*CANARIES, client_key)
        if canary in text
    ]
    assert not leaks, "leaked: " + "; ".join(f"{canary} in {where}" for where, canary in leaks)
