"""`manage.py rotate_secrets_key`: stored provider secrets move to a new data key, the
old key is gone, and a running proxy keeps sending the right key upstream."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway import vault
from gateway.models import PendingConfig, Provider
from tests import builders
from tests.fakes.upstream import FakeUpstream
from tests.live import LiveProxy

HELLO = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def own_key_file(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data key of this test's own: rotating the shared one would strand the secrets
    other tests encrypted with it."""
    settings.DATA_DIR = tmp_path
    monkeypatch.delenv(vault.ENV_KEYS, raising=False)


def rotate() -> str:
    out = io.StringIO()
    call_command("rotate_secrets_key", stdout=out)
    return out.getvalue()


def test_rotation_reencrypts_every_secret_and_drops_the_old_key(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    sealed = vault.seal_headers({"x-auth-token": "canary-header-0123456789"}, {})
    provider = builders.provider("p", upstream.url, headers=sealed)
    builders.route(provider, "upstream-a", alias="claude-*")
    key = builders.client_key()
    pending = PendingConfig.objects.create(
        text_encrypted=vault.encrypt("providers: {}\n# sk-pending-canary"), source="f.yaml"
    )
    old_keys = vault.file_keys()
    old_token = Provider.objects.get().api_key_encrypted

    assert "re-encrypted 2 stored secrets" in rotate()

    new_keys = vault.file_keys()
    assert len(new_keys) == 1 and new_keys[0] not in old_keys
    token = Provider.objects.get().api_key_encrypted
    assert token != old_token
    assert Fernet(new_keys[0].encode()).decrypt(token.encode()).decode() == builders.UPSTREAM_SECRET
    with pytest.raises(InvalidToken):
        Fernet(old_keys[0].encode()).decrypt(token.encode())
    with pytest.raises(vault.SecretError):
        vault.decrypt(old_token)  # the old key is really gone
    header = Provider.objects.get().options["headers"]["x-auth-token"]
    assert header != sealed["x-auth-token"]
    assert vault.open_value(header) == "canary-header-0123456789"
    pending.refresh_from_db()
    assert pending.text.endswith("sk-pending-canary")

    proxy.reload()  # the bump makes every process rebuild; here, at once
    response = httpx.post(f"{proxy.url}/v1/messages", json=HELLO, headers={"x-api-key": key})
    assert response.status_code == 200
    assert upstream.requests[-1].header("x-api-key") == builders.UPSTREAM_SECRET
    assert upstream.requests[-1].header("x-auth-token") == "canary-header-0123456789"


@pytest.mark.django_db
def test_with_the_environment_variable_the_new_key_goes_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv(vault.ENV_KEYS, old)
    Provider.objects.create(
        name="p", endpoint="https://p.example", api_key_encrypted=vault.encrypt("sk-x")
    )
    with pytest.raises(CommandError, match="holds one key"):
        rotate()
    monkeypatch.setenv(vault.ENV_KEYS, f"{new},{old}")
    assert "re-encrypted 1 stored secrets" in rotate()
    token = Provider.objects.get().api_key_encrypted
    assert Fernet(new.encode()).decrypt(token.encode()) == b"sk-x"
    monkeypatch.setenv(vault.ENV_KEYS, new)  # the old key removed: still readable
    assert vault.decrypt(token) == "sk-x"


def test_new_key_prints_a_usable_key_and_changes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    call_command("rotate_secrets_key", "--new-key", stdout=out)
    fernet = Fernet(out.getvalue().strip().encode())  # a malformed key would raise here
    assert fernet.decrypt(fernet.encrypt(b"x")) == b"x"
    assert not (tmp_path / "secrets.key").exists()
