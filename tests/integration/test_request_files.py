"""The JSONL request log and body logging: complete, parseable, and without secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx

from gateway.jsonl import JsonlLog
from gateway.logbook import AttemptEntry, Entry
from gateway.models import RequestLog
from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy

SECRET_IN_PROMPT = "sk-ant-api03-canary-in-the-prompt-0123456789"


def _traffic(proxy: LiveProxy, upstream: FakeUpstream) -> str:
    builders.route(builders.provider("acme", upstream.url), "acme-model", alias="claude-*")
    key = builders.client_key()
    proxy.reload()
    prompt = [{"role": "user", "content": f"my key is {SECRET_IN_PROMPT}"}]
    for stream in (True, False):
        body = {"model": "claude-x", "max_tokens": 5, "messages": prompt, "stream": stream}
        response = httpx.post(
            f"{proxy.url}/v1/messages", json=body, headers={"authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200
    return key


def test_every_request_is_one_json_line_without_secrets(
    transactional_db: None, upstream: FakeUpstream, settings, tmp_path: Path
) -> None:
    settings.LOG_FILE = str(tmp_path / "requests.jsonl")
    proxy = LiveProxy().start()
    try:
        key = _traffic(proxy, upstream)
    finally:
        proxy.stop()  # drains the queue into the file
    text = (tmp_path / "requests.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["stream"] for line in lines] == [True, False]
    first = lines[0]
    assert (first["provider"], first["upstream_model"], first["status"]) == (
        "acme",
        "acme-model",
        200,
    )
    assert first["attempts"][0]["outcome"] == "won" and first["ttft_ms"] > 0
    assert first["request_headers"]["authorization"] == "[redacted]"
    assert "my key is [redacted]" in first["request_body"]
    assert "message_start" in first["response_body"]
    assert json.loads(lines[1]["response_body"])["type"] == "message"
    for secret in (key, builders.UPSTREAM_SECRET, SECRET_IN_PROMPT):
        assert secret not in text


def test_body_logging_keeps_redacted_bodies_on_the_log_row(
    transactional_db: None, upstream: FakeUpstream, settings
) -> None:
    settings.LOG_BODIES = True
    proxy = LiveProxy().start()
    try:
        _traffic(proxy, upstream)
        proxy.flush_logs()
    finally:
        proxy.stop()
    row = RequestLog.objects.get(stream=False)
    assert "my key is [redacted]" in row.request_body
    assert SECRET_IN_PROMPT not in row.request_body
    assert json.loads(row.response_body)["type"] == "message"


def test_the_file_rotates_by_size(tmp_path: Path) -> None:
    log = JsonlLog(tmp_path / "r.jsonl", max_bytes=2_000, backups=3)
    log.start()
    for n in range(40):
        log.write(
            Entry(
                created_at=datetime.now(UTC),
                path="/v1/messages",
                requested_model=f"m-{n}",
                attempts=[AttemptEntry(1, "p", "m", 0.0, outcome="won")],
            )
        )
    log.stop()
    files = sorted(tmp_path.glob("r.jsonl*"))
    assert len(files) == 4, "the live file and three backups"
    for file in files:
        assert all(
            json.loads(line)["path"] == "/v1/messages" for line in file.read_text().splitlines()
        )
