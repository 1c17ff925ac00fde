"""The config file change seen by `serve --watch`: review, apply or discard it.

The banner in base.html links here. Apply parses the stored YAML again and runs
`apply_config` in the same transaction that deletes the PendingConfig, so a file that no
longer applies changes nothing and stays pending.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import staff_required
from dashboard.nav import page_context
from dashboard.watch import apply_pending
from gateway import vault
from gateway.config_db import ApplyReport
from gateway.config_file import ConfigError
from gateway.models import PendingConfig


@staff_required
@require_GET
async def pending_page(request: HttpRequest) -> HttpResponse:
    pending = await sync_to_async(PendingConfig.newest)()
    context = page_context("config", pending=pending)
    return TemplateResponse(request, "dashboard/pending.html", context)


def _apply_newest() -> tuple[PendingConfig | None, ApplyReport | None]:
    pending = PendingConfig.newest()
    if pending is None:
        return None, None
    return pending, apply_pending(pending)


@staff_required
@require_POST
async def pending_apply(request: HttpRequest) -> HttpResponse:
    try:
        pending, report = await sync_to_async(_apply_newest)()
    except (ConfigError, vault.SecretError) as exc:
        messages.error(request, f"The config file cannot be applied; nothing changed: {exc}")
        return redirect("dashboard:pending")
    if pending is None or report is None:
        messages.warning(request, "There is no pending config file change to apply.")
        return redirect("dashboard:overview")
    if report.new_keys:  # plaintext keys are shown once on this page, never put in messages
        context = page_context("config", report=report, applied_from=pending.source)
        return TemplateResponse(request, "dashboard/pending.html", context)
    messages.success(request, f"Applied {pending.source}.")
    for line in report.lines or ("No changes: the configuration already matched the file.",):
        messages.info(request, line)
    return redirect("dashboard:overview")


@staff_required
@require_POST
async def pending_discard(request: HttpRequest) -> HttpResponse:
    deleted, _ = await PendingConfig.objects.all().adelete()
    if deleted:
        messages.info(request, "The config file change was discarded; nothing changed.")
    return redirect("dashboard:overview")
