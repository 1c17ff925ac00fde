"""PostgreSQL restarted under traffic: requests keep being served, and every request the
proxy accepted while the database was away is in the request log afterwards."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection, connections

from gateway.models import RequestLog
from tests import builders
from tests.conftest import skip_or_fail
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
HELLO = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def cluster() -> tuple[str, str]:
    """(version, name) of the local PostgreSQL cluster this test may restart."""
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL pass runs this")
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        skip_or_fail("a local PostgreSQL cluster that pg_ctlcluster can restart")
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    return version, "main"


def restart_postgres(version: str, name: str) -> None:
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart"]
    subprocess.run(argv, check=True, capture_output=True, timeout=60)


def test_a_postgres_restart_under_traffic_loses_no_row(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    version, name = cluster()
    builders.route(builders.provider("p", upstream.url), "upstream-a", alias="claude-*")
    key = builders.client_key()
    proxy.reload()
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(headers={"x-api-key": key}, timeout=30) as client:
            while not stop.is_set():
                statuses.append(client.post(f"{proxy.url}/v1/messages", json=HELLO).status_code)

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        started = time.monotonic()  # traffic flows before the restart, however slow the start
        while len(statuses) < 20 and time.monotonic() - started < 15:
            time.sleep(0.05)
        before_restart = len(statuses)
        restart_postgres(version, name)
        time.sleep(1.5)  # traffic goes on while the writer reconnects
    finally:
        stop.set()
        sender.join(30)
        connections.close_all()  # this test's own connection died with the server
    assert before_restart > 0 and len(statuses) > before_restart
    assert set(statuses) == {200}  # the request path never waited on the database
    deadline = time.monotonic() + 30
    while proxy.runtime.logbook.waiting and time.monotonic() < deadline:
        time.sleep(0.1)
    proxy.flush_logs()
    logbook = proxy.runtime.logbook
    assert (logbook.dropped, logbook.rejected) == (0, 0)
    assert RequestLog.objects.count() == len(statuses)
