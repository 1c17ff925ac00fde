"""`serve --watch FILE`: review a changed config file on the terminal or in the dashboard."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.config_diff import MASK
from dashboard.watch import ConfigWatcher, review
from gateway.config_db import apply_config, export_config
from gateway.config_file import parse_config
from gateway.models import ConfigVersion, PendingConfig, Provider
from tests.config_samples import CURRENT, NEW_SECRET, STORED_SECRET

CHANGED = f"""
providers:
  acme:
    type: anthropic
    endpoint: https://acme-2.example
    apiKey: {STORED_SECRET}
  gamma:
    type: anthropic
    endpoint: https://gamma.example
    apiKey: {NEW_SECRET}
models:
  - name: acme-large
    provider: acme
    alias: claude-*
    context: 200000
  - name: gamma-model
    provider: gamma
"""

INVALID = """
providers:
  acme:
    type: anthropic
models: []
"""

pytestmark = pytest.mark.django_db


@pytest.fixture
def current() -> None:
    apply_config(parse_config(CURRENT).spec)


@pytest.fixture
def config_path(tmp_path: Path, current: None) -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(CURRENT)
    return path


def rewrite(path: Path, text: str) -> None:
    """Write `text` so the watcher sees a new signature even within one mtime tick."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def watcher(path: Path, answer: str | None = None) -> tuple[ConfigWatcher, list[str]]:
    said: list[str] = []
    ask: Callable[[str], str] = lambda prompt: said.append(prompt) or (answer or "")  # noqa: E731
    made = ConfigWatcher(
        path, interactive=answer is not None, ask=ask, say=said.append, interval=0.05
    )
    return made, said


def test_review_lists_the_changes_with_secrets_masked(config_path: Path) -> None:
    rewrite(config_path, CHANGED)
    result = review(config_path)
    assert result.ok and result.error is None
    subjects = {(line.kind, line.subject) for line in result.diff.lines}
    assert ("added", "provider gamma") in subjects
    assert ("removed", "provider beta") in subjects
    assert ("changed", "provider acme") in subjects
    assert ("added", "model gamma/gamma-model (gamma-model)") in subjects
    printed = "\n".join(result.describe())
    assert "https://acme.example → https://acme-2.example" in printed
    assert MASK in printed
    for secret in (STORED_SECRET, NEW_SECRET):
        assert secret not in printed and secret not in str(result.lines_json())


def test_review_of_an_invalid_file_names_the_yaml_path(config_path: Path) -> None:
    before, version = export_config(), ConfigVersion.current()
    rewrite(config_path, INVALID)
    result = review(config_path)
    assert not result.ok and result.error is not None
    assert result.error.path == "providers.acme.endpoint"
    assert "providers.acme.endpoint" in "\n".join(result.describe())
    assert export_config() == before and ConfigVersion.current() == version


def test_an_unchanged_file_is_not_reviewed(config_path: Path) -> None:
    made, said = watcher(config_path)
    assert made.step() is None and not said
    rewrite(config_path, CURRENT)  # touched, same content: nothing pending
    assert made.step() is not None
    assert not PendingConfig.objects.exists()


def test_a_change_without_a_terminal_waits_in_the_database(config_path: Path) -> None:
    version = ConfigVersion.current()
    made, said = watcher(config_path)
    rewrite(config_path, CHANGED)
    made.step()
    pending = PendingConfig.newest()
    assert pending is not None and pending.source == str(config_path)
    assert {"kind": "added", "subject": "provider gamma"}.items() <= pending.diff[0].items()
    assert pending.text == CHANGED and NEW_SECRET not in pending.text_encrypted
    assert any("review it in the dashboard" in line for line in said)
    assert ConfigVersion.current() == version and Provider.objects.filter(name="beta").exists()


def test_an_invalid_change_creates_nothing(config_path: Path) -> None:
    before, version = export_config(), ConfigVersion.current()
    made, said = watcher(config_path)
    rewrite(config_path, INVALID)
    made.step()
    assert not PendingConfig.objects.exists()
    assert any("providers.acme.endpoint" in line for line in said)
    assert export_config() == before and ConfigVersion.current() == version


@pytest.mark.django_db(transaction=True)
def test_the_polling_thread_notices_a_change(tmp_path: Path) -> None:
    apply_config(parse_config(CURRENT).spec)
    path = tmp_path / "proxy.yaml"
    path.write_text(CURRENT)
    made, _ = watcher(path)
    thread = made.start()
    try:
        rewrite(path, CHANGED)
        deadline = time.monotonic() + 5
        while not PendingConfig.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        made.stop()
        thread.join(2)
    assert PendingConfig.objects.count() == 1
    assert isinstance(thread, threading.Thread) and not thread.is_alive()


def test_on_a_terminal_yes_applies(config_path: Path) -> None:
    version = ConfigVersion.current()
    made, said = watcher(config_path, answer="y")
    rewrite(config_path, CHANGED)
    made.step()
    assert "apply? [y/N] " in said
    assert ConfigVersion.current() > version
    assert set(Provider.objects.values_list("name", flat=True)) == {"acme", "gamma"}
    assert any("Configuration applied" in line for line in said)
    assert not PendingConfig.objects.exists()
    assert not any(NEW_SECRET in line or STORED_SECRET in line for line in said)


def test_on_a_terminal_no_changes_nothing(config_path: Path) -> None:
    before, version = export_config(), ConfigVersion.current()
    made, said = watcher(config_path, answer="n")
    rewrite(config_path, CHANGED)
    made.step()
    assert "Not applied." in said
    assert export_config() == before and ConfigVersion.current() == version
    assert not PendingConfig.objects.exists()


# --- the dashboard banner ----------------------------------------------------------------

BANNER = "data-pending-config"


@pytest.fixture
def pending(config_path: Path) -> PendingConfig:
    made, _ = watcher(config_path)
    rewrite(config_path, CHANGED)
    made.step()
    row = PendingConfig.newest()
    assert row is not None
    return row


def make_client(staff: bool, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    name = "admin" if staff else "guest"
    user = get_user_model().objects.create_user(name, password="pw-tests-0nly", is_staff=staff)
    client.force_login(user)
    return client


def test_staff_see_the_banner_and_the_review_page(pending: PendingConfig) -> None:
    staff = make_client(staff=True)
    html = staff.get("/dashboard/").content.decode()
    assert BANNER in html and str(pending.source) in html
    assert f"{len(pending.diff)} changes" in html
    review_page = staff.get("/dashboard/config/pending/").content.decode()
    assert '<tr data-diff="added">' in review_page and "provider gamma" in review_page
    assert NEW_SECRET not in review_page and STORED_SECRET not in review_page
    guest = make_client(staff=False)
    assert guest.get("/dashboard/config/pending/").status_code == 403


def test_apply_from_the_banner(pending: PendingConfig) -> None:
    staff = make_client(staff=True)
    version = ConfigVersion.current()
    response = staff.post("/dashboard/config/pending/apply/", follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert BANNER not in html and "provider gamma" in html  # the report, via messages
    assert ConfigVersion.current() > version
    assert set(Provider.objects.values_list("name", flat=True)) == {"acme", "gamma"}
    assert not PendingConfig.objects.exists()


def test_discard_from_the_banner(pending: PendingConfig) -> None:
    staff = make_client(staff=True)
    before, version = export_config(), ConfigVersion.current()
    html = staff.post("/dashboard/config/pending/discard/", follow=True).content.decode()
    assert BANNER not in html and "discarded" in html
    assert export_config() == before and ConfigVersion.current() == version
    assert not PendingConfig.objects.exists()


def test_only_staff_with_a_csrf_token_may_apply_or_discard(pending: PendingConfig) -> None:
    version = ConfigVersion.current()
    urls = ("/dashboard/config/pending/apply/", "/dashboard/config/pending/discard/")
    guest = make_client(staff=False)
    assert BANNER not in guest.get("/dashboard/requests/").content.decode()
    staff = make_client(staff=True, csrf=True)
    assert BANNER in staff.get("/dashboard/").content.decode()
    for url in urls:
        anonymous = Client().post(url)
        assert anonymous.status_code == 302 and "/dashboard/login/" in anonymous["Location"]
        assert guest.post(url).status_code == 403
        assert staff.post(url).status_code == 403  # no CSRF token
        assert staff.get(url).status_code == 405
    assert PendingConfig.objects.exists() and ConfigVersion.current() == version
