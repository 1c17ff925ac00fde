"""The request history: a filtered, keyset-paged list and one request's detail.

The filter form works as a plain GET of the page; with htmx it fetches only the results
partial and pushes the page's own URL, so a reload or a shared link shows the same search.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.core.validators import RegexValidator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django_htmx.http import push_url

from dashboard import queries
from dashboard.access import staff_required
from dashboard.nav import page_context
from gateway.models import ApiKey, Attempt, RequestLog

REDACTED = "[redacted]"
_SECRET_NAME = (
    r"api[-_]?key|authorization|(?:access|refresh|auth|session)[-_]?token|secret|password"
)
SECRET_NAME = re.compile(_SECRET_NAME, re.IGNORECASE)
# `name: value` / `"name": "value"` / `name=value` pairs in free text, quoted or bare.
SECRET_PAIR = re.compile(
    rf"""(?P<name>[\w-]{{0,40}}(?:{_SECRET_NAME})[\w-]{{0,40}}\\?["']?\s*[:=]\s*)"""
    r"""(?:(?P<quote>\\?["'])(?:(?!(?P=quote)).)*(?P=quote)|(?:bearer\s+)?[^\s"',;&}\]]+)""",
    re.IGNORECASE,
)
SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


def _redact_pair(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('name')}{quote}{REDACTED}{quote}"


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if SECRET_NAME.search(str(k)) else _redact_json(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(item) for item in value]
    return value


def redact(text: str) -> str:
    """A body fit to show: secret-named fields and `sk-...` strings replaced, JSON indented."""
    with contextlib.suppress(ValueError):  # not JSON, or cut by the size cap: text rules only
        text = json.dumps(_redact_json(json.loads(text)), indent=2, ensure_ascii=False)
    text = SECRET_PAIR.sub(_redact_pair, text)
    return SK_TOKEN.sub(f"sk-{REDACTED}", text)


class FilterForm(forms.Form):
    since = forms.DateTimeField(
        label="From (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    until = forms.DateTimeField(
        label="Until (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    model = forms.CharField(
        label="Requested model",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"list": "models-seen", "autocomplete": "off"}),
    )
    provider = forms.CharField(
        label="Provider",
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"list": "providers-seen", "autocomplete": "off"}),
    )
    api_key = forms.TypedChoiceField(label="API key", required=False, coerce=int, empty_value=None)
    status = forms.CharField(
        label="Status",
        required=False,
        max_length=3,
        validators=[RegexValidator(r"^(\d{3}|[1-5][xX]{2})$", "A code like 429, or 5xx.")],
        widget=forms.TextInput(attrs={"placeholder": "429 or 5xx", "inputmode": "text"}),
    )
    outcome = forms.ChoiceField(
        label="Outcome", required=False, choices=[("", "Any"), *RequestLog.Outcome.choices]
    )
    error_text = forms.CharField(
        label="Error contains", required=False, max_length=200, widget=forms.TextInput()
    )
    sort = forms.ChoiceField(
        label="Sort", required=False, choices=[(k, s.label) for k, s in queries.SORTS.items()]
    )

    def __init__(self, data: Any, keys: list[tuple[int, str]]) -> None:
        super().__init__(data)
        self.fields["api_key"].choices = [("", "Any"), *keys]

    def filters(self) -> queries.RequestFilters:
        """The search of the valid fields; an invalid one is reported and left out."""
        self.is_valid()
        given = {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}
        return queries.RequestFilters(**given)


async def _search(request: HttpRequest) -> dict[str, Any]:
    keys = [(key.pk, str(key)) async for key in ApiKey.objects.order_by("name", "pk")]
    form = FilterForm(request.GET, keys)
    after, before = request.GET.get("after", ""), request.GET.get("before", "")
    page = await sync_to_async(queries.search)(form.filters(), after=after, before=before)
    return {"form": form, "page": page}


@staff_required
async def page(request: HttpRequest) -> HttpResponse:
    context = await _search(request)
    context["seen"] = await sync_to_async(queries.recent_values)()
    return TemplateResponse(request, "dashboard/requests.html", page_context("requests", **context))


def _page_url(request: HttpRequest) -> str:
    """The full page of this search, without the empty fields a form submits."""
    query = request.GET.copy()
    for name in [name for name, value in query.items() if not value]:
        del query[name]
    return reverse("dashboard:requests") + (f"?{query.urlencode()}" if query else "")


@staff_required
async def results(request: HttpRequest) -> HttpResponse:
    """The results partial for htmx; a plain visit is sent to the full page instead."""
    if not request.htmx:
        return HttpResponseRedirect(_page_url(request))
    response = TemplateResponse(
        request, "dashboard/partials/request_results.html", await _search(request)
    )
    return push_url(response, _page_url(request))


@dataclass(frozen=True)
class Bar:
    """One attempt on the request's time axis, as CSS percentages."""

    attempt: Attempt
    left: str
    width: str
    first_token: str | None


def timeline(row: RequestLog, attempts: list[Attempt]) -> list[Bar]:
    ends = [a.started_ms + a.duration_ms for a in attempts]
    span = max([row.duration_ms, *ends]) or 1.0

    def pct(ms: float) -> str:
        return f"{min(max(ms / span * 100, 0.0), 100.0):.2f}"

    return [
        Bar(
            attempt=a,
            left=pct(a.started_ms),
            width=pct(max(a.duration_ms, span * 0.005)),
            first_token=None if a.ttft_ms is None else pct(a.started_ms + a.ttft_ms),
        )
        for a in attempts
    ]


def _skip_reasons(skipped: Any) -> list[dict[str, Any]]:
    """The {provider, model, reason} entries; anything else in the column is left out."""
    return [s for s in skipped if isinstance(s, dict)] if isinstance(skipped, list) else []


@staff_required
async def detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        row, attempts = await sync_to_async(queries.request_with_attempts)(pk)
    except RequestLog.DoesNotExist as exc:
        raise Http404("no such request") from exc
    context = page_context(
        "requests",
        row=row,
        bars=timeline(row, attempts),
        skipped=_skip_reasons(row.skipped),
        request_body=redact(row.request_body) if row.request_body else "",
        response_body=redact(row.response_body) if row.response_body else "",
    )
    return TemplateResponse(request, "dashboard/request_detail.html", context)
