"""The sections of the dashboard, in nav order. Pages register here as they are built."""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

SECTIONS = (
    ("requests", "Requests", "dashboard:requests"),
    ("providers", "Providers", "dashboard:providers"),
    ("keys", "API keys", "dashboard:keys"),
    ("config", "Config", "dashboard:config"),
)


def nav_links() -> list[dict[str, str]]:
    links = []
    for section, label, name in SECTIONS:
        try:
            links.append({"section": section, "label": label, "url": reverse(name)})
        except NoReverseMatch:
            continue  # not built yet
    return links


def page_context(section: str, **extra: Any) -> dict[str, Any]:
    return {"section": section, "nav_links": nav_links(), **extra}
