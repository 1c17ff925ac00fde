"""Template context for every dashboard page."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from gateway.models import PendingConfig


def pending_config(request: HttpRequest) -> dict[str, Any]:
    """The newest config file change awaiting review (`serve --watch`), for staff only."""
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_staff", False):
        return {}
    return {"pending_config": PendingConfig.newest()}
