"""Client API keys: list with usage, create (the key is shown once), revoke, usage per day.

A new key exists in plaintext only in the response to the POST that made it: it is never
stored, put in the session or a message, and the response is marked `no-store`.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from dashboard import queries
from dashboard.access import staff_required
from dashboard.nav import page_context
from gateway.limits import KeyLimits
from gateway.models import ApiKey, ConfigVersion


class LimitsForm(forms.Form):
    """A key's limits (gateway/limits.py); an empty field means no limit."""

    concurrent = forms.IntegerField(
        label="Requests in progress at once", required=False, min_value=1
    )
    requests_per_minute = forms.IntegerField(
        label="Requests per minute", required=False, min_value=1
    )
    tokens_per_day = forms.IntegerField(
        label="Tokens per UTC day (input + output)", required=False, min_value=1
    )
    tokens_per_month = forms.IntegerField(
        label="Tokens per UTC month (input + output)", required=False, min_value=1
    )

    @classmethod
    def of(cls, key: ApiKey) -> LimitsForm:
        return cls(initial=asdict(key.limits))

    def limits(self) -> KeyLimits:
        fields = LimitsForm.base_fields  # not a subclass's other fields
        return KeyLimits(**{name: self.cleaned_data.get(name) for name in fields})


class KeyForm(LimitsForm):
    name = forms.CharField(label="Name", max_length=200)
    expires_on = forms.DateField(
        label="Valid through (optional; the key stops at the end of this UTC day)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_expires_on(self) -> date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day < datetime.now(UTC).date():
            raise forms.ValidationError("That day is already over.")
        return day

    field_order = ["name", "expires_on"]

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _key_rows() -> list[dict[str, Any]]:
    now = timezone.now()
    usage = queries.key_usage(now)
    return [
        {"key": key, "state": key_state(key, now), "usage": usage.get(key.pk, queries.Usage())}
        for key in queries.keys_in_order()
    ]


def create_key(name: str, expires_at: datetime | None, limits: KeyLimits) -> tuple[ApiKey, str]:
    return ApiKey.issue(name, ApiKey.Source.ADMIN, expires_at, limits)


def set_limits(pk: int, limits: KeyLimits) -> bool:
    """Store new limits; every process applies them within a second (config bump)."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=pk).first()
        if key is None:
            return False
        key.limits = limits
        key.save(update_fields=list(ApiKey.LIMIT_FIELDS))
        ConfigVersion.bump()
    return True


def revoke_key(pk: int) -> bool:
    """Revoke once; the config is bumped only when something changed."""
    with transaction.atomic():
        changed = ApiKey.objects.filter(pk=pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if changed:
            ConfigVersion.bump()
    return bool(changed)


@staff_required
async def page(request: HttpRequest) -> HttpResponse:
    rows = await sync_to_async(_key_rows)()
    context = page_context("keys", rows=rows, form=KeyForm())
    return TemplateResponse(request, "dashboard/keys.html", context)


@staff_required
@require_POST
async def create(request: HttpRequest) -> HttpResponse:
    """With htmx: the form region (and the table, out of band); without: the whole page."""
    form = KeyForm(request.POST)
    context: dict[str, Any] = {"form": form}
    if form.is_valid():
        key, plaintext = await sync_to_async(create_key)(
            form.cleaned_data["name"], form.expires_at(), form.limits()
        )
        context.update(form=KeyForm(), created=key, plaintext=plaintext)
    if request.htmx:
        name = "created" if "created" in context else "form"
        template = f"dashboard/partials/keys_{name}.html"
    else:
        template = "dashboard/keys.html"
    if "created" in context or not request.htmx:
        context["rows"] = await sync_to_async(_key_rows)()
    response = TemplateResponse(request, template, page_context("keys", **context))
    add_never_cache_headers(response)
    return response


@staff_required
@require_POST
async def revoke(request: HttpRequest, pk: int) -> HttpResponse:
    key = await ApiKey.objects.filter(pk=pk).afirst()
    if key is None:
        raise Http404("no such key")
    here = reverse("dashboard:key-detail", args=[pk])
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Nothing revoked: tick the box to confirm.")
        return HttpResponseRedirect(f"{here}#revoke")
    if await sync_to_async(revoke_key)(pk):
        messages.success(request, f"Key “{key.name}” revoked; clients using it are now refused.")
    else:
        messages.info(request, f"Key “{key.name}” was already revoked.")
    return HttpResponseRedirect(here)


@staff_required
@require_POST
async def limits(request: HttpRequest, pk: int) -> HttpResponse:
    form = LimitsForm(request.POST)
    if not form.is_valid():
        context = await sync_to_async(_detail_context)(pk)
        context["limits_form"] = form
        return TemplateResponse(
            request, "dashboard/key_detail.html", page_context("keys", **context), status=400
        )
    if not await sync_to_async(set_limits)(pk, form.limits()):
        raise Http404("no such key")
    messages.success(request, "Limits saved; every process applies them within a second.")
    return HttpResponseRedirect(reverse("dashboard:key-detail", args=[pk]) + "#limits")


def _detail_context(pk: int) -> dict[str, Any]:
    key = ApiKey.objects.filter(pk=pk).first()
    if key is None:
        raise Http404("no such key")
    days = queries.daily_usage(pk, datetime.now(UTC).date())
    return {
        "key": key,
        "limits_form": LimitsForm.of(key),
        "state": key_state(key, timezone.now()),
        "days": days,
        "peak": max([d.requests for d in days] + [1]),
        "totals": {
            "requests": sum(d.requests for d in days),
            "input_tokens": sum(d.input_tokens for d in days),
            "output_tokens": sum(d.output_tokens for d in days),
        },
    }


@staff_required
async def detail(request: HttpRequest, pk: int) -> HttpResponse:
    context = await sync_to_async(_detail_context)(pk)
    return TemplateResponse(request, "dashboard/key_detail.html", page_context("keys", **context))
