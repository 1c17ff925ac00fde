"""Providers and their model routes: list with live health, edit, toggle, delete, test.

Every change bumps the config version, so running processes pick it up within a second.
ORM work runs in `sync_to_async` helpers; the live health is read on the event loop,
which owns the health registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import aget_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from dashboard.access import runtime_of, staff_required
from dashboard.forms import ModelRouteForm, ProviderForm, key_display
from dashboard.nav import page_context
from dashboard.probe import ProbeResult, probe
from gateway.health import HealthView
from gateway.models import ConfigVersion, ModelRoute, Provider
from gateway.runtime import Runtime

PARTIALS = "dashboard/partials/"


@dataclass(frozen=True)
class RouteRow:
    route: ModelRoute
    health: HealthView | None  # None: no runtime in this process


@dataclass(frozen=True)
class ProviderCard:
    provider: Provider
    key: str  # as it may be shown: env.NAME, masked, or "none"
    routes: tuple[RouteRow, ...]


def _providers() -> list[Provider]:
    return list(Provider.objects.prefetch_related("routes"))


def _card(provider: Provider, runtime: Runtime | None) -> ProviderCard:
    rows = tuple(
        RouteRow(route, runtime.health.view((provider.name, route.name)) if runtime else None)
        for route in provider.routes.all()
    )
    return ProviderCard(provider, key_display(provider), rows)


@staff_required
async def provider_list(request: HttpRequest) -> HttpResponse:
    runtime = runtime_of(request)
    cards = [_card(p, runtime) for p in await sync_to_async(_providers)()]
    context = page_context("providers", cards=cards, live=runtime is not None)
    return TemplateResponse(request, "dashboard/providers.html", context)


# --- create and edit ---------------------------------------------------------------------


def _save_if_valid(form: ProviderForm | ModelRouteForm) -> Provider | ModelRoute | None:
    return form.save() if form.is_valid() else None


async def _provider_form(request: HttpRequest, instance: Provider | None) -> HttpResponse:
    form = ProviderForm(request.POST or None, instance=instance)
    if request.method == "POST":
        saved = await sync_to_async(_save_if_valid)(form)
        if saved is not None:
            messages.success(request, f"Saved provider {saved}.")
            return redirect("dashboard:providers")
    context = page_context("providers", form=form, provider=instance)
    if instance is not None:
        context["current_key"] = key_display(instance)
    return TemplateResponse(request, "dashboard/provider_form.html", context)


@staff_required
@sensitive_post_parameters("api_key")
async def provider_new(request: HttpRequest) -> HttpResponse:
    return await _provider_form(request, None)


@staff_required
@sensitive_post_parameters("api_key")
async def provider_edit(request: HttpRequest, pk: int) -> HttpResponse:
    return await _provider_form(request, await aget_object_or_404(Provider, pk=pk))


async def _route_form(
    request: HttpRequest, provider: Provider, instance: ModelRoute | None
) -> HttpResponse:
    form = ModelRouteForm(request.POST or None, provider=provider, instance=instance)
    if request.method == "POST":
        saved = await sync_to_async(_save_if_valid)(form)
        if saved is not None:
            messages.success(request, f"Saved model {saved}.")
            return redirect("dashboard:providers")
    context = page_context("providers", form=form, provider=provider, route=instance)
    return TemplateResponse(request, "dashboard/model_form.html", context)


async def _route_of(pk: int) -> ModelRoute:
    return await aget_object_or_404(ModelRoute.objects.select_related("provider"), pk=pk)


@staff_required
async def model_new(request: HttpRequest, pk: int) -> HttpResponse:
    return await _route_form(request, await aget_object_or_404(Provider, pk=pk), None)


@staff_required
async def model_edit(request: HttpRequest, pk: int) -> HttpResponse:
    route = await _route_of(pk)
    return await _route_form(request, route.provider, route)


# --- toggle and delete -------------------------------------------------------------------


def _flip(row: Provider | ModelRoute) -> None:
    with transaction.atomic():
        row.enabled = not row.enabled
        row.save(update_fields=["enabled"])
        ConfigVersion.bump()


def _delete(row: Provider | ModelRoute) -> None:
    with transaction.atomic():
        row.delete()
        ConfigVersion.bump()


async def _toggled(
    request: HttpRequest, row: Provider | ModelRoute, partial: str, name: str
) -> HttpResponse:
    await sync_to_async(_flip)(row)
    if request.htmx:
        return TemplateResponse(request, PARTIALS + partial, {name: row})
    state = "enabled" if row.enabled else "disabled"
    messages.success(request, f"{row} is now {state}.")
    return redirect("dashboard:providers")


@staff_required
@require_POST
async def provider_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    provider = await aget_object_or_404(Provider, pk=pk)
    return await _toggled(request, provider, "provider_toggle.html", "provider")


@staff_required
@require_POST
async def model_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    return await _toggled(request, await _route_of(pk), "model_toggle.html", "route")


async def _confirmed_delete(
    request: HttpRequest, row: Provider | ModelRoute, template: str, context: dict
) -> HttpResponse:
    """GET shows what would go; only a POST carrying the confirmation deletes."""
    if request.method == "POST" and request.POST.get("confirm") == "yes":
        label = str(row)
        await sync_to_async(_delete)(row)
        messages.success(request, f"Deleted {label}.")
        return redirect("dashboard:providers")
    return TemplateResponse(request, template, page_context("providers", **context))


@staff_required
async def provider_delete(request: HttpRequest, pk: int) -> HttpResponse:
    provider = await aget_object_or_404(Provider, pk=pk)
    routes = [str(route) async for route in provider.routes.select_related("provider")]
    context = {"provider": provider, "routes": routes}
    template = "dashboard/provider_confirm_delete.html"
    return await _confirmed_delete(request, provider, template, context)


@staff_required
async def model_delete(request: HttpRequest, pk: int) -> HttpResponse:
    route = await _route_of(pk)
    context = {"route": route, "provider": route.provider}
    return await _confirmed_delete(request, route, "dashboard/model_confirm_delete.html", context)


# --- test --------------------------------------------------------------------------------


async def _route_to_test(provider: Provider, route_id: str | None) -> ModelRoute:
    """The chosen route of this provider, or its first one when none was chosen."""
    routes = provider.routes.select_related("provider")
    if route_id:
        if not route_id.isdigit():
            raise Http404("no such route")
        routes = routes.filter(pk=int(route_id))
    route = await routes.afirst()
    if route is None:
        raise Http404("no such route")
    return route


@staff_required
@require_POST
async def provider_test(request: HttpRequest, pk: int) -> HttpResponse:
    provider = await aget_object_or_404(Provider, pk=pk)
    route = await _route_to_test(provider, request.POST.get("route"))
    label = f"{provider.name}/{route.name}"
    result: ProbeResult = await probe(runtime_of(request), route.pk, label)
    context = {"result": result, "route": route}
    if request.htmx:
        return TemplateResponse(request, PARTIALS + "provider_test_result.html", context)
    return TemplateResponse(
        request, "dashboard/provider_test.html", page_context("providers", **context)
    )
