"""The config page: upload or paste YAML, read the diff, apply or discard; download.

A pending upload lives only in the user's session, as the YAML text; it is parsed again
on apply, and `apply_config` changes everything in one transaction or nothing.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import staff_required
from dashboard.config_diff import diff_against_database
from dashboard.forms import ConfigUploadForm
from dashboard.nav import page_context
from gateway.config_db import ApplyReport, apply_config, export_config
from gateway.config_file import (
    ConfigError,
    format_config,
    parse_config,
)
from gateway.models import ConfigVersion, ModelRoute, Provider

PENDING = "dashboard.config.pending"
DOWNLOAD_NAME = "anthropic-proxy.yaml"


def _summary() -> dict[str, int]:
    return {
        "providers": Provider.objects.count(),
        "models": ModelRoute.objects.count(),
        "version": ConfigVersion.current(),
    }


async def _page(request: HttpRequest, status: int = 200, **extra: Any) -> TemplateResponse:
    context = page_context(
        "config",
        form=extra.pop("form", None) or ConfigUploadForm(),
        pending=await request.session.ahas_key(PENDING),
        summary=await sync_to_async(_summary)(),
        **extra,
    )
    return TemplateResponse(request, "dashboard/config.html", context, status=status)


@staff_required
@require_GET
async def config_page(request: HttpRequest) -> HttpResponse:
    return await _page(request)


async def _preview(request: HttpRequest, text: str) -> HttpResponse:
    try:
        parsed = parse_config(text)
    except ConfigError as exc:
        await request.session.apop(PENDING, None)
        return await _page(request, 400, config_error=exc)
    await request.session.aset(PENDING, text)
    diff = await sync_to_async(diff_against_database)(parsed.spec)
    context = page_context("config", diff=diff, warnings=parsed.warnings)
    return TemplateResponse(request, "dashboard/config_preview.html", context)


@staff_required
@sensitive_post_parameters("config_text")
async def config_preview(request: HttpRequest) -> HttpResponse:
    """POST: read an upload and show its diff; GET: show the pending upload's diff again."""
    if request.method == "POST":
        form = ConfigUploadForm(request.POST, request.FILES)
        if not form.is_valid():
            return await _page(request, 400, form=form)
        return await _preview(request, form.cleaned_data["text"])
    text = await request.session.aget(PENDING)
    if text is None:
        return redirect("dashboard:config")
    return await _preview(request, text)


def _apply(text: str) -> ApplyReport:
    return apply_config(parse_config(text).spec)


@staff_required
@require_POST
async def config_apply(request: HttpRequest) -> HttpResponse:
    """Apply the pending upload (or discard it, with action=discard)."""
    text = await request.session.apop(PENDING, None)
    if request.POST.get("action") == "discard":
        messages.info(request, "The upload was discarded; nothing changed.")
        return redirect("dashboard:config")
    if text is None:
        messages.warning(request, "There is no pending upload to apply.")
        return redirect("dashboard:config")
    try:
        report = await sync_to_async(_apply)(text)
    except ConfigError as exc:
        return await _page(request, 400, config_error=exc)
    return await _page(request, report=report)


def _export_text() -> str:
    return format_config(export_config())


@staff_required
@require_GET
async def config_download(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(
        await sync_to_async(_export_text)(), content_type="application/yaml; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{DOWNLOAD_NAME}"'
    return response
