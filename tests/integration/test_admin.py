"""The Django admin: login required, secrets never shown, every change bumps the version."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from gateway import vault
from gateway.auth import hash_key
from gateway.models import ApiKey, ConfigVersion, Provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_superuser("root", "", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


def test_admin_pages_require_login() -> None:
    response = Client().get("/admin/gateway/provider/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_provider_key_is_stored_encrypted_and_never_shown(staff: Client) -> None:
    before = ConfigVersion.current()
    response = staff.post(
        "/admin/gateway/provider/add/",
        {
            "name": "acme",
            "type": "anthropic",
            "endpoint": "https://acme.example",
            "api_key_env": "",
            "new_api_key": "sk-acme-canary-secret",
            "enabled": "on",
            "options": "{}",
            "position": "0",
            "routes-TOTAL_FORMS": "0",
            "routes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    provider = Provider.objects.get(name="acme")
    assert "sk-acme-canary-secret" not in provider.api_key_encrypted
    assert vault.decrypt(provider.api_key_encrypted) == "sk-acme-canary-secret"
    assert ConfigVersion.current() > before
    page = staff.get(f"/admin/gateway/provider/{provider.pk}/change/").content.decode()
    assert "sk-acme-canary-secret" not in page and provider.api_key_encrypted not in page


def test_new_api_key_is_shown_once_and_stored_as_a_hash(staff: Client) -> None:
    response = staff.post("/admin/gateway/apikey/add/", {"name": "laptop"}, follow=True)
    shown = re.findall(r"sk-ap-[A-Za-z0-9_-]{20,}", response.content.decode())
    assert len(set(shown)) == 1
    row = ApiKey.objects.get(name="laptop")
    assert row.key_hash == hash_key(shown[0]) and row.source == "admin"
    listing = staff.get("/admin/gateway/apikey/").content.decode()
    assert shown[0] not in listing
