"""SIGTERM on a real `manage.py serve`: drain (/health 503, still serving), stop
accepting, let streams finish within the grace period, end the rest with an Anthropic
`event: error`, write every request-log row, exit."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from bench.procs import PYTHON, spawn, stop, wait_http_ok
from gateway.models import RequestLog
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script, Synthetic
from tests.integration.test_multiprocess import database_url
from tests.live import free_port

pytestmark = pytest.mark.django_db(transaction=True)
DRAIN, GRACE = 1.0, 2.0


class Stream(threading.Thread):
    """One streamed request on a raw socket, read to the end; `first` is set at the first
    body byte."""

    def __init__(self, port: int, key: str, model: str) -> None:
        super().__init__(daemon=True)
        body = json.dumps(
            {
                "model": model,
                "max_tokens": 5,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
        ).encode()
        head = (
            f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.request = head.encode() + body
        self.port = port
        self.data = b""
        self.first = threading.Event()
        self.ended_at = 0.0

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(self.request)
            while chunk := sock.recv(65536):
                self.data += chunk
                if b"event: " in self.data:
                    self.first.set()
        self.ended_at = time.monotonic()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_drains_then_ends_what_is_left_with_an_error(tmp_path: Path) -> None:
    with FakeUpstream() as upstream:
        provider = builders.provider("p", upstream.url)
        builders.route(provider, "long", alias="long-*")
        builders.route(provider, "short", alias="short-*")
        upstream.script("long", Script(synthetic=Synthetic(tokens=300, per_token=0.1)))
        upstream.script("short", Script(synthetic=Synthetic(tokens=6, per_token=0.2)))
        key = builders.client_key()
        port = free_port()
        log = tmp_path / "serve.log"
        env = {
            "DATABASE_URL": database_url(),
            "DRAIN_SECONDS": str(DRAIN),
            "SHUTDOWN_GRACE_SECONDS": str(GRACE),
        }
        proc = spawn([PYTHON, "manage.py", "serve", "--port", str(port)], log, env)
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/health", proc, log, timeout=60)
            long, short = Stream(port, key, "long-1"), Stream(port, key, "short-1")
            long.start()
            short.start()
            assert long.first.wait(10) and short.first.wait(10)

            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            assert (health.status_code, health.json()["status"]) == (503, "draining")
            served = httpx.post(
                f"http://127.0.0.1:{port}/v1/messages",
                json={
                    "model": "short-1",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"x-api-key": key},
                timeout=10,
            )
            assert served.status_code == 200  # still serving while draining

            deadline = signalled + DRAIN + 3
            while not refused(port):
                assert time.monotonic() < deadline, "still accepting after the drain"
                time.sleep(0.05)

            short.join(10)
            assert b"event: message_stop" in short.data and b"event: error" not in short.data
            long.join(DRAIN + GRACE + 10)
            assert not long.is_alive()
            assert b"event: message_stop" not in long.data
            tail = long.data.rsplit(b"event: error", 1)[-1]
            assert b"overloaded_error" in tail and b"shutting down" in tail
            assert long.ended_at - signalled >= DRAIN + GRACE - 0.2  # it had its grace
            assert proc.wait(20) in (0, -signal.SIGTERM)
        finally:
            stop(proc)
    rows = {row.requested_model: row for row in RequestLog.objects.all()}
    assert len(RequestLog.objects.all()) == 3  # the one served while draining too
    assert rows["short-1"].outcome == "ok"
    assert (rows["long-1"].outcome, rows["long-1"].error_type) == ("error", "shutdown")
