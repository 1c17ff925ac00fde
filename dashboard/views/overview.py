"""The live overview page, and its partial for clients without websockets."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from dashboard.access import runtime_of, staff_required
from dashboard.live import overview
from dashboard.nav import page_context


def _context(request: HttpRequest) -> dict:
    runtime = runtime_of(request)
    empty = {"rows": [], "totals": {}, "charts": [], "config_version": None}
    return overview(runtime) if runtime is not None else empty


@staff_required
async def page(request: HttpRequest) -> HttpResponse:
    context = {**page_context("overview"), **_context(request)}
    return TemplateResponse(request, "dashboard/overview.html", context)


@staff_required
async def live_partial(request: HttpRequest) -> HttpResponse:
    return TemplateResponse(request, "dashboard/partials/overview_live.html", _context(request))
