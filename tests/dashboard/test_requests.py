"""The request history: staff only, filters that filter, keyset pages, a detail timeline."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard import queries
from dashboard.views.requests import redact
from gateway.models import ApiKey, Attempt, RequestLog

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}


def client_for(staff: bool | None) -> Client:
    """A client logged in as staff (True), as a non-staff user (False), or anonymous (None)."""
    client = Client()
    if staff is not None:
        user = get_user_model().objects.create_user(
            "staff" if staff else "guest", is_staff=staff
        )  # no password: force_login needs none, and hashing one is slow
        client.force_login(user)
    return client


def log(**fields: Any) -> RequestLog:
    values: dict[str, Any] = {
        "created_at": NOW - timedelta(minutes=5),
        "requested_model": "claude-sonnet",
        "provider": "acme",
        "upstream_model": "acme-large",
        "status": 200,
        "duration_ms": 1000.0,
        "ttft_ms": 300.0,
    }
    return RequestLog.objects.create(**{**values, **fields})


def shown(content: bytes) -> list[int]:
    """The request ids a results table shows, in order."""
    return [int(pk) for pk in re.findall(rb'data-request="(\d+)"', content)]


@pytest.mark.parametrize("staff", [None, False, True])
@pytest.mark.parametrize("url", ["/dashboard/requests/", "/dashboard/requests/results/", "detail"])
def test_request_pages_are_for_staff_only(url: str, staff: bool | None) -> None:
    if url == "detail":
        url = f"/dashboard/requests/{log().pk}/"
    response = client_for(staff).get(url, **HTMX)
    if staff is None:
        assert response.status_code == 302
        assert response["Location"].startswith("/dashboard/login/?next=")
    else:
        assert response.status_code == (200 if staff else 403)


def _log_set() -> dict[str, RequestLog]:
    key = ApiKey.objects.create(name="team-a", prefix="sk-ap-aaaa")
    return {
        "old": log(created_at=NOW - timedelta(days=3)),
        "haiku": log(requested_model="claude-haiku", provider="other"),
        "limited": log(
            status=429, outcome="error", error_type="rate_limit_error", error_message="slow down"
        ),
        "overloaded": log(status=529, outcome="error", error_message="Upstream is Overloaded"),
        "cancelled": log(status=499, outcome="client_cancelled"),
        "keyed": log(api_key=key, api_key_name=key.name),
    }


FILTERS: list[tuple[Callable[[dict[str, RequestLog]], dict[str, Any]], set[str]]] = [
    (lambda rows: {"model": "claude-haiku"}, {"haiku"}),
    (lambda rows: {"provider": "other"}, {"haiku"}),
    (lambda rows: {"api_key": rows["keyed"].api_key_id}, {"keyed"}),
    (lambda rows: {"status": "429"}, {"limited"}),
    (lambda rows: {"status": "5xx"}, {"overloaded"}),
    (lambda rows: {"outcome": "client_cancelled"}, {"cancelled"}),
    (lambda rows: {"error_text": "overloaded"}, {"overloaded"}),
    (lambda rows: {"error_text": "RATE_LIMIT"}, {"limited"}),
    (lambda rows: {"until": f"{NOW - timedelta(days=1):%Y-%m-%dT%H:%M}"}, {"old"}),
    (
        lambda rows: {"since": f"{NOW - timedelta(days=1):%Y-%m-%dT%H:%M}", "status": "4xx"},
        {"limited", "cancelled"},
    ),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("params", "expected"), FILTERS)
def test_each_filter_shows_exactly_the_matching_requests(
    params: Callable[[dict[str, RequestLog]], dict[str, Any]], expected: set[str]
) -> None:
    rows = _log_set()
    response = client_for(True).get("/dashboard/requests/", params(rows))
    assert response.status_code == 200
    by_pk = {row.pk: name for name, row in rows.items()}
    assert {by_pk[pk] for pk in shown(response.content)} == expected


def test_without_filters_the_newest_request_comes_first() -> None:
    rows = _log_set()
    response = client_for(True).get("/dashboard/requests/")
    assert shown(response.content)[-1] == rows["old"].pk
    assert len(shown(response.content)) == len(rows)


def test_the_htmx_partial_holds_only_the_results_and_pushes_the_page_url() -> None:
    rows = _log_set()
    response = client_for(True).get(
        "/dashboard/requests/results/", {"model": "claude-haiku", "status": ""}, **HTMX
    )
    assert response.status_code == 200
    assert b"<html" not in response.content and b"<form" not in response.content
    assert shown(response.content) == [rows["haiku"].pk]
    assert response["HX-Push-Url"] == "/dashboard/requests/?model=claude-haiku"


def test_the_partial_url_without_htmx_sends_the_browser_to_the_full_page() -> None:
    response = client_for(True).get("/dashboard/requests/results/", {"status": "5xx"})
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/requests/?status=5xx"


def test_the_filter_form_works_with_and_without_javascript() -> None:
    content = client_for(True).get("/dashboard/requests/").content.decode()
    form = re.search(r'<form[^>]*role="search"[^>]*>', content, re.S)
    assert form is not None
    tag = form.group(0)
    assert 'method="get"' in tag and 'action="/dashboard/requests/"' in tag
    assert 'hx-get="/dashboard/requests/results/"' in tag
    assert 'hx-target="#results"' in tag and 'hx-push-url="true"' in tag
    for name in ("since", "until", "model", "provider", "api_key", "status", "outcome", "sort"):
        assert f'<label for="id_{name}">' in content


@pytest.mark.parametrize("url", ["/dashboard/requests/", "/dashboard/requests/results/"])
def test_an_invalid_filter_is_reported_and_the_valid_ones_still_apply(url: str) -> None:
    rows = _log_set()
    response = client_for(True).get(url, {"status": "4x4", "provider": "other"}, **HTMX)
    assert b"A code like 429, or 5xx." in response.content
    assert shown(response.content) == [rows["haiku"].pk]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("slowest", ["slow", "middle", "quick", "no-ttft"]),
        ("quickest", ["no-ttft", "quick", "middle", "slow"]),
        ("ttft_slowest", ["middle", "slow", "quick"]),
        ("ttft_quickest", ["quick", "slow", "middle"]),
        ("oldest", ["quick", "middle", "slow", "no-ttft"]),
    ],
)
def test_requests_sort_by_duration_and_ttft(sort: str, expected: list[str]) -> None:
    rows = {
        "quick": log(duration_ms=100, ttft_ms=50, created_at=NOW - timedelta(minutes=4)),
        "middle": log(duration_ms=2000, ttft_ms=1500, created_at=NOW - timedelta(minutes=3)),
        "slow": log(duration_ms=9000, ttft_ms=400, created_at=NOW - timedelta(minutes=2)),
        "no-ttft": log(
            duration_ms=50, ttft_ms=None, outcome="error", created_at=NOW - timedelta(minutes=1)
        ),
    }
    response = client_for(True).get("/dashboard/requests/", {"sort": sort})
    by_pk = {row.pk: name for name, row in rows.items()}
    assert [by_pk[pk] for pk in shown(response.content)] == expected


@pytest.mark.postgres
@pytest.mark.parametrize("sort", list(queries.SORTS))
@pytest.mark.parametrize("walk", ["sort index", "sorted matches", "sort index, filtered"])
def test_keyset_pages_visit_every_row_once_forwards_and_backwards(
    sort: str, walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    moments = [NOW - timedelta(minutes=n // 2) for n in range(11)]  # pairs share a time
    for n, moment in enumerate(moments):
        log(created_at=moment, duration_ms=float(n % 4), ttft_ms=float(n % 3))
    if walk == "sort index, filtered":
        monkeypatch.setattr(queries, "DENSE", 5)  # 11 matches count as many
    filters = queries.RequestFilters(sort=sort, provider="" if walk == "sort index" else "acme")
    pages = [queries.search(filters, size=3)]
    while pages[-1].next is not None:
        pages.append(queries.search(filters, after=pages[-1].next.encode(), size=3))
    forwards = [row.pk for page in pages for row in page.rows]
    assert len(forwards) == len(set(forwards)) == 11 and len(pages) == 4
    assert pages[0].previous is None
    back = [pages[-1]]
    while back[-1].previous is not None:
        back.append(queries.search(filters, before=back[-1].previous.encode(), size=3))
    assert [row.pk for page in reversed(back) for row in page.rows] == forwards


def test_the_page_links_lead_to_the_next_and_previous_pages() -> None:
    for n in range(queries.PAGE_SIZE + 10):
        log(created_at=NOW - timedelta(seconds=n))
    staff = client_for(True)
    first = staff.get("/dashboard/requests/", {"provider": "acme"})
    assert len(shown(first.content)) == queries.PAGE_SIZE
    assert b"Previous page" not in first.content
    next_href = re.search(rb'rel="next" href="([^"]+)"', first.content)
    assert next_href is not None
    second = staff.get(next_href.group(1).decode().replace("&amp;", "&"))
    assert len(shown(second.content)) == 10 and b"Next page" not in second.content
    assert not set(shown(first.content)) & set(shown(second.content))
    assert b"provider=acme" in next_href.group(1)
    prev_href = re.search(rb'rel="prev" href="([^"]+)"', second.content)
    assert prev_href is not None
    back = staff.get(prev_href.group(1).decode().replace("&amp;", "&"))
    assert shown(back.content) == shown(first.content)


@pytest.mark.parametrize("cursor", [{"after": "yesterday~x"}, {"before": "2026-01-01T00:00~1"}])
def test_a_malformed_cursor_shows_the_first_page(cursor: dict[str, str]) -> None:
    rows = [log(created_at=NOW - timedelta(minutes=n)) for n in range(3)]
    response = client_for(True).get("/dashboard/requests/", cursor)
    assert shown(response.content) == [row.pk for row in rows]


def _attempts(row: RequestLog) -> None:
    Attempt.objects.create(
        request=row, seq=1, provider="acme", model="acme-large", started_ms=0,
        duration_ms=400, status=529, error_kind="http_status", outcome="failed",
    )  # fmt: skip
    Attempt.objects.create(
        request=row, seq=2, provider="backup", model="backup-1", started_ms=450,
        ttft_ms=200, duration_ms=550, status=200, outcome="won",
    )  # fmt: skip


def test_the_detail_page_shows_each_attempt_on_a_timeline_and_the_skip_reasons() -> None:
    row = log(
        duration_ms=1000,
        input_tokens=1234,
        output_tokens=567,
        tps=88.5,
        attempt_count=2,
        skipped=[{"provider": "cold", "model": "cold-1", "reason": "circuit open"}],
    )
    _attempts(row)
    content = client_for(True).get(f"/dashboard/requests/{row.pk}/").content.decode()
    assert 'data-attempt="1"' in content and 'data-attempt="2"' in content
    assert "http_status" in content and "backup / backup-1" in content
    assert 'style="left: 0.00%; width: 40.00%"' in content  # 400 ms of 1000
    assert 'style="left: 45.00%; width: 55.00%"' in content
    assert 'class="tick" style="left: 65.00%"' in content  # first token at 450 + 200 ms
    assert "cold" in content and "cold-1" in content and "circuit open" in content
    assert "1234" in content and "567" in content and "88.5" in content


def test_an_unknown_request_is_404() -> None:
    assert client_for(True).get("/dashboard/requests/999999/").status_code == 404


def test_bodies_are_shown_with_their_secrets_redacted() -> None:
    request_body = (
        '{"model": "claude-x", "metadata": {"api_key": "plain-value-1"}, "headers": '
        '{"x-api-key": "sk-ant-api03-SECRETSECRET", "Authorization": "Bearer tok-value-2"},'
        ' "messages": [{"role": "user", "content": "my key is sk-proj-ABCDEF123456, hi"}]}'
    )
    response_body = "event: error\ndata: upstream said authorization: Bearer tok-value-3 api_key=v4"
    row = log(request_body=request_body, response_body=response_body)
    content = client_for(True).get(f"/dashboard/requests/{row.pk}/").content.decode()
    for secret in ("plain-value-1", "SECRETSECRET", "tok-value-2", "ABCDEF123456", "tok-value-3"):
        assert secret not in content
    assert "api_key=v4" not in content
    assert "[redacted]" in content and "claude-x" in content and "upstream said" in content


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ('{"apiKey": "k-123"}', '"apiKey": "[redacted]"', "k-123"),
        ("x-api-key: sk-ant-xyz987654\nhost: a", "host: a", "xyz987654"),
        ('{"note": "see \\"api_key\\": \\"abc\\" here"}', "here", "abc"),
        ("password=hunter2&user=bob", "user=bob", "hunter2"),
        ('{"max_tokens": 5, "input_tokens": 9}', '"max_tokens": 5', "[redacted]"),
        ("task-force desk-lamp", "task-force desk-lamp", "[redacted]"),
    ],
)
def test_redact_hides_secret_values_and_keeps_the_rest(text: str, kept: str, gone: str) -> None:
    shown_text = redact(text)
    assert kept in shown_text and gone not in shown_text
