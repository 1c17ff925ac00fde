"""Sign-in throttling (dashboard and admin), secure cookies behind TLS, check --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    cache.clear()


@pytest.fixture
def admin_user() -> None:
    get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True, is_superuser=True)


def sign_in(client: Client, password: str, url: str = "/dashboard/login/", **extra: str) -> bytes:
    response = client.post(url, {"username": "ops", "password": password}, **extra)
    return response.content


@override_settings(LOGIN_FAILURES_PER_USER=3)
def test_after_three_failures_even_the_right_password_is_refused(admin_user: None) -> None:
    client = Client()
    for _ in range(3):
        assert b"Wrong username or password" in sign_in(client, "guess")
    page = sign_in(client, PASSWORD)
    assert b"Too many failed sign-ins. Try again in 15 minutes." in page
    assert "_auth_user_id" not in client.session
    # the admin's own login form is held back the same way
    admin = sign_in(Client(), PASSWORD, "/admin/login/?next=/admin/")
    assert b"Too many failed sign-ins" in admin


@override_settings(LOGIN_FAILURES_PER_USER=3, LOGIN_LOCKOUT_SECONDS=1)
def test_the_lockout_ends_and_a_success_clears_the_count(admin_user: None) -> None:
    client = Client()
    for _ in range(3):
        sign_in(client, "guess")
    cache.clear()  # as the lockout window running out would
    sign_in(client, PASSWORD)
    assert client.session["_auth_user_id"]
    other = Client()
    for _ in range(2):
        sign_in(other, "guess")
    sign_in(other, PASSWORD)  # success: the two failures are forgotten
    later = Client()
    sign_in(later, "guess")
    sign_in(later, "guess")
    assert b"Wrong username or password" in sign_in(later, "guess")  # 3rd since the success


@override_settings(LOGIN_FAILURES_PER_USER=100, LOGIN_FAILURES_PER_IP=4)
def test_one_address_trying_many_usernames_is_held_back(admin_user: None) -> None:
    client = Client(REMOTE_ADDR="203.0.113.9")
    for name in ("a", "b", "c", "d"):
        client.post("/dashboard/login/", {"username": name, "password": "x"})
    assert b"Too many failed sign-ins" in sign_in(client, PASSWORD)
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    sign_in(elsewhere, PASSWORD)
    assert elsewhere.session["_auth_user_id"]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("HTTPS", "DEBUG")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_when_configured_for_production() -> None:
    done = manage("check", "--deploy", "--fail-level", "WARNING", HTTPS="on")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    plain = manage("check", "--deploy", "--fail-level", "WARNING")
    assert plain.returncode != 0 and "SESSION_COOKIE_SECURE" in plain.stdout + plain.stderr


def test_behind_tls_the_cookies_are_secure_only() -> None:
    done = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER)",
        HTTPS="on",
    )
    last = done.stdout.strip().splitlines()[-1]
    assert last == "True True ('HTTP_X_FORWARDED_PROTO', 'https')"
