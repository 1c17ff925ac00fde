"""API keys: shown once and stored hashed, revoked with confirmation, usage per key and day."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import queries
from gateway.auth import authenticate, display_prefix, hash_key
from gateway.logbook import Entry, write_batch
from gateway.models import ApiKey, ConfigVersion, RequestLog
from gateway.snapshot import build_snapshot

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
PLAINTEXT = re.compile(r"sk-ap-[A-Za-z0-9_\-]{20,}")


def client_for(staff: bool | None, **options: bool) -> Client:
    """A client logged in as staff (True), as a non-staff user (False), or anonymous (None)."""
    client = Client(**options)
    if staff is not None:
        user = get_user_model().objects.create_user(
            "staff" if staff else "guest", is_staff=staff
        )  # no password: force_login needs none, and hashing one is slow
        client.force_login(user)
    return client


def a_key(name: str = "team-a", **fields: object) -> ApiKey:
    return ApiKey.objects.create(name=name, prefix="sk-ap-abcdef", key_hash=name, **fields)


@pytest.mark.parametrize("staff", [None, False, True])
@pytest.mark.parametrize("url", ["/dashboard/keys/", "detail"])
def test_key_pages_are_for_staff_only(url: str, staff: bool | None) -> None:
    if url == "detail":
        url = f"/dashboard/keys/{a_key().pk}/"
    response = client_for(staff).get(url)
    if staff is None:
        assert response.status_code == 302
        assert response["Location"].startswith("/dashboard/login/?next=")
    else:
        assert response.status_code == (200 if staff else 403)


@pytest.mark.parametrize("staff", [None, False])
def test_only_staff_can_create_or_revoke(staff: bool | None) -> None:
    key = a_key()
    client = client_for(staff)
    created = client.post("/dashboard/keys/new/", {"name": "sneaky"})
    revoked = client.post(f"/dashboard/keys/{key.pk}/revoke/", {"confirm": "yes"})
    assert created.status_code == revoked.status_code == (302 if staff is None else 403)
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["team-a"]
    assert ApiKey.objects.get().revoked_at is None


def test_a_created_key_is_shown_once_and_stored_only_as_its_hash() -> None:
    staff = client_for(True)
    version = ConfigVersion.current()
    response = staff.post("/dashboard/keys/new/", {"name": "ci-runner"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    found = PLAINTEXT.findall(response.content.decode())
    assert len(set(found)) == 1
    plaintext = found[0]
    key = ApiKey.objects.get(name="ci-runner")
    assert key.key_hash == hash_key(plaintext) and key.prefix == display_prefix(plaintext)
    assert key.source == ApiKey.Source.ADMIN
    stored = [str(v) for v in ApiKey.objects.values().get(pk=key.pk).values()]
    assert not any(plaintext in value for value in stored)
    assert plaintext not in str(dict(staff.session.items()))
    assert ConfigVersion.current() == version + 1
    again = staff.get("/dashboard/keys/")
    assert plaintext not in again.content.decode() and b"ci-runner" in again.content
    detail = staff.get(f"/dashboard/keys/{key.pk}/")
    assert plaintext not in detail.content.decode()


def test_the_created_key_authenticates_through_the_snapshot_index() -> None:
    response = client_for(True).post("/dashboard/keys/new/", {"name": "ci-runner"})
    plaintext = PLAINTEXT.findall(response.content.decode())[0]
    index = build_snapshot().keys
    found = authenticate({b"x-api-key": plaintext.encode()}, index, datetime.now(UTC))
    assert found is not None and found.name == "ci-runner"


def test_with_htmx_the_new_key_comes_back_with_the_table_out_of_band() -> None:
    response = client_for(True).post("/dashboard/keys/new/", {"name": "ci-runner"}, **HTMX)
    content = response.content.decode()
    assert response.status_code == 200 and "<html" not in content
    assert PLAINTEXT.search(content) is not None
    assert 'id="keys-table" class="table-wrap" hx-swap-oob="true"' in content
    assert "ci-runner</a>" in content


def test_an_invalid_key_form_is_shown_again_with_its_errors() -> None:
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    response = client_for(True).post(
        "/dashboard/keys/new/", {"name": "late", "expires_on": yesterday}, **HTMX
    )
    assert response.status_code == 200 and b"That day is already over." in response.content
    assert PLAINTEXT.search(response.content.decode()) is None
    assert not ApiKey.objects.exists()


def test_the_expiry_day_is_valid_until_its_end() -> None:
    day = datetime.now(UTC).date() + timedelta(days=10)
    client_for(True).post("/dashboard/keys/new/", {"name": "temp", "expires_on": day.isoformat()})
    expires_at = ApiKey.objects.get(name="temp").expires_at
    assert expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def test_revoking_needs_the_confirmation_box() -> None:
    key = a_key()
    version = ConfigVersion.current()
    response = client_for(True).post(f"/dashboard/keys/{key.pk}/revoke/", follow=True)
    assert b"Nothing revoked" in response.content
    key.refresh_from_db()
    assert key.revoked_at is None and ConfigVersion.current() == version


def test_revoking_sets_revoked_at_and_bumps_the_config_once() -> None:
    key = a_key()
    staff = client_for(True)
    version = ConfigVersion.current()
    response = staff.post(f"/dashboard/keys/{key.pk}/revoke/", {"confirm": "yes"}, follow=True)
    key.refresh_from_db()
    assert key.revoked_at is not None and ConfigVersion.current() == version + 1
    assert b"revoked; clients using it are now refused" in response.content
    staff.post(f"/dashboard/keys/{key.pk}/revoke/", {"confirm": "yes"})
    assert ConfigVersion.current() == version + 1


def test_revoke_is_post_only_and_unknown_keys_are_404() -> None:
    staff = client_for(True)
    assert staff.get(f"/dashboard/keys/{a_key().pk}/revoke/").status_code == 405
    assert staff.post("/dashboard/keys/999999/revoke/", {"confirm": "yes"}).status_code == 404
    assert staff.get("/dashboard/keys/999999/").status_code == 404


def test_posts_without_a_csrf_token_are_refused() -> None:
    key = a_key()
    strict = client_for(True, enforce_csrf_checks=True)
    assert strict.post("/dashboard/keys/new/", {"name": "x"}).status_code == 403
    revoke = strict.post(f"/dashboard/keys/{key.pk}/revoke/", {"confirm": "yes"})
    assert revoke.status_code == 403
    assert ApiKey.objects.count() == 1 and ApiKey.objects.get().revoked_at is None
    page = strict.get("/dashboard/keys/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert token is not None
    with_token = {"name": "x", "csrfmiddlewaretoken": token.group(1).decode()}
    assert strict.post("/dashboard/keys/new/", with_token).status_code == 200


def _traffic(key: ApiKey) -> None:
    now = timezone.now()
    for ago, tokens in ((timedelta(minutes=5), 10), (timedelta(hours=2), 20)):
        RequestLog.objects.create(
            api_key=key, created_at=now - ago, input_tokens=tokens, output_tokens=1
        )
    RequestLog.objects.create(api_key=key, created_at=now - timedelta(days=5), input_tokens=100)
    RequestLog.objects.create(api_key=key, created_at=now - timedelta(days=40), input_tokens=1)


@pytest.mark.postgres
def test_key_usage_counts_the_last_day_and_the_last_30_days() -> None:
    key, idle = a_key(), a_key("idle")
    _traffic(key)
    usage = queries.key_usage(timezone.now())
    assert usage[key.pk] == queries.Usage(
        requests_day=2, tokens_day=32, requests_month=3, tokens_month=132
    )
    assert idle.pk not in usage
    row = client_for(True).get("/dashboard/keys/").content.decode()
    cells = re.search(rf'data-key="{key.pk}">(.*?)</tr>', row, re.S)
    assert cells is not None
    assert re.findall(r"<td>(\d+)</td>", cells.group(1)) == ["2", "32", "3", "132"]


@pytest.mark.postgres
def test_the_key_page_shows_use_per_day_for_30_days() -> None:
    key = a_key()
    _traffic(key)
    today = datetime.now(UTC).date()
    days = queries.daily_usage(key.pk, today)
    assert len(days) == 30 and days[-1].day == today and days[0].day == today - timedelta(29)
    by_day = {d.day: (d.requests, d.input_tokens) for d in days if d.requests}
    five_ago = (timezone.now() - timedelta(days=5)).date()
    assert by_day[five_ago] == (1, 100)
    assert sum(r for r, _ in by_day.values()) == 3
    content = client_for(True).get(f"/dashboard/keys/{key.pk}/").content.decode()
    assert content.count("<meter") == 30
    assert f'data-day="{five_ago:%Y-%m-%d}"' in content


def _entry(at: datetime, key: ApiKey | None) -> Entry:
    return Entry(created_at=at, path="/v1/messages", api_key_id=key.pk if key else None)


@pytest.mark.postgres
def test_write_batch_moves_last_used_at_forward_in_one_update() -> None:
    first, second = a_key("first"), a_key("second")
    t = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    batch = [_entry(t, first), _entry(t + timedelta(seconds=3), first)]
    batch += [_entry(t + timedelta(seconds=1), second), _entry(t, None)]
    with CaptureQueriesContext(connection) as queries_run:
        write_batch(batch)
    updates = [q for q in queries_run.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.last_used_at == t + timedelta(seconds=3)
    assert second.last_used_at == t + timedelta(seconds=1)
    write_batch([_entry(t - timedelta(hours=1), first)])  # a slow request, written late
    first.refresh_from_db()
    assert first.last_used_at == t + timedelta(seconds=3)


def test_the_key_list_shows_state_and_last_use() -> None:
    a_key("gone", revoked_at=timezone.now())
    a_key("old", expires_at=timezone.now() - timedelta(days=1))
    a_key("live", last_used_at=datetime(2026, 3, 4, 5, 6, tzinfo=UTC))
    content = client_for(True).get("/dashboard/keys/").content.decode()
    for state in ("revoked", "expired", "active"):
        assert f">{state}</span>" in content
    assert "2026-03-04 05:06" in content
    assert content.index(">gone</a>") > content.index(">old</a>")  # revoked keys last


def test_a_key_can_be_created_with_limits_that_reach_the_snapshot() -> None:
    response = client_for(True).post(
        "/dashboard/keys/new/",
        {"name": "bounded", "concurrent": "3", "tokens_per_month": "5000000"},
    )
    plaintext = PLAINTEXT.findall(response.content.decode())[0]
    found = authenticate({b"x-api-key": plaintext.encode()}, build_snapshot().keys, timezone.now())
    assert found is not None
    assert (found.limits.concurrent, found.limits.tokens_per_month) == (3, 5_000_000)
    assert found.limits.requests_per_minute is None


def test_limits_are_edited_on_the_key_page_and_bump_the_config() -> None:
    key = a_key(requests_per_minute=10)
    staff = client_for(True)
    page = staff.get(f"/dashboard/keys/{key.pk}/").content.decode()
    assert 'name="requests_per_minute"' in page and 'value="10"' in page
    version = ConfigVersion.current()
    response = staff.post(
        f"/dashboard/keys/{key.pk}/limits/", {"tokens_per_day": "1000"}, follow=True
    )
    assert b"Limits saved" in response.content
    key.refresh_from_db()
    assert (key.requests_per_minute, key.tokens_per_day) == (None, 1000)  # empty lifts it
    assert ConfigVersion.current() == version + 1


def test_limits_must_be_positive_and_staff_only() -> None:
    key = a_key()
    response = client_for(True).post(f"/dashboard/keys/{key.pk}/limits/", {"concurrent": "0"})
    assert response.status_code == 400 and b"greater than or equal to 1" in response.content
    refused = client_for(False).post(f"/dashboard/keys/{key.pk}/limits/", {"concurrent": "5"})
    assert refused.status_code in (302, 403)
    key.refresh_from_db()
    assert key.max_concurrent is None
