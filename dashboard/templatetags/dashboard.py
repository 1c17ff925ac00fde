"""Formatting for the dashboard, and server-rendered SVG sparklines (no chart library)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

register = template.Library()
WIDTH, HEIGHT = 240, 40
NONE = "\u2013"  # an en dash for "no value"


@register.filter
def ms(value: float | None) -> str:
    return NONE if value is None else f"{value:,.0f} ms"


@register.filter
def num(value: float | None) -> str:
    return NONE if value is None else f"{value:,.1f}"


@register.filter
def pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.0f}%"


@register.simple_tag
def sparkline(points: list[tuple[int, float | None]]) -> str:
    """An inline SVG polyline of a per-minute series; gaps where there is no value."""
    values = [v for _, v in points if v is not None]
    top = max(values) if values else 0.0
    if not points or top <= 0:
        return format_html(
            '<svg class="sparkline" viewBox="0 0 {} {}" role="img" aria-label="no data"></svg>',
            WIDTH,
            HEIGHT,
        )
    step = WIDTH / max(len(points) - 1, 1)
    coords = " ".join(
        f"{i * step:.1f},{HEIGHT - 2 - (v / top) * (HEIGHT - 4):.1f}"
        for i, (_, v) in enumerate(points)
        if v is not None
    )
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" role="img" aria-label="peak {}">'
        '<polyline points="{}" fill="none" stroke="currentColor" stroke-width="1.5"/></svg>',
        WIDTH,
        HEIGHT,
        f"{top:,.1f}",
        coords,
    )
