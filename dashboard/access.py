"""Who may see the dashboard: logged-in staff only, for pages and websockets alike."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from gateway.runtime import Runtime

View = Callable[..., Awaitable[HttpResponse]]


def staff_required(view: View) -> View:
    """Anonymous visitors go to the login page; logged-in non-staff get 403."""

    @wraps(view)
    async def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = await request.auser()
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        if not user.is_staff:
            raise PermissionDenied("staff only")
        request.user = user
        return await view(request, *args, **kwargs)

    return guarded


def runtime_of(request: HttpRequest) -> Runtime | None:
    """The gateway runtime of this process, when the request came through the ASGI app."""
    scope = getattr(request, "scope", None) or {}
    return scope.get("gateway_runtime")
