"""`manage.py monitor [--url U] [--token T] [--interval S]`: a terminal view of live traffic.

A Textual app that polls the proxy's GET /live.json (the same figures as the web overview)
and shows totals, one row per route and the last finished requests. It keeps retrying
while the proxy is unreachable; `q` quits. `MonitorApp` takes any async fetch function,
so tests can drive it headless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import httpx
from django.core.management.base import BaseCommand, CommandParser
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static

Feed = dict[str, Any]
Fetch = Callable[[], Awaitable[Feed]]

ROUTE_COLUMNS = (
    "provider",
    "model",
    "req/min",
    "in flight",
    "TTFT p50",
    "TPS",
    "errors %",
    "circuit",
    "last error",
)
RECENT_COLUMNS = ("time", "provider", "model", "status", "outcome", "TTFT", "duration", "out tok")


def http_fetcher(url: str, token: str | None = None, timeout: float = 2.0) -> Fetch:
    """An async function that GETs {url}/live.json and returns its JSON."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    endpoint = f"{url.rstrip('/')}/live.json"

    async def fetch() -> Feed:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(endpoint, headers=headers)
        response.raise_for_status()
        return response.json()

    return fetch


def _num(value: float | None, suffix: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{suffix}"


def _circuit(route: Feed) -> str:
    circuit = str(route.get("circuit") or "closed")
    open_for = route.get("open_for")
    return f"{circuit} ({open_for:.0f}s)" if open_for is not None else circuit


def route_cells(route: Feed) -> tuple[str, ...]:
    return (
        str(route["provider"]),
        str(route["model"]),
        str(route.get("requests_per_min", 0)),
        str(route.get("in_flight", 0)),
        _num(route.get("ttft_p50_ms"), " ms"),
        _num(route.get("tps"), digits=1),
        _num((route.get("error_rate") or 0) * 100, "%", 1),
        _circuit(route),
        (route.get("last_error") or "")[:60],
    )


def recent_cells(item: Feed) -> tuple[str, ...]:
    stamp = str(item.get("time") or "")
    return (
        stamp[11:19] if len(stamp) >= 19 else stamp,
        str(item.get("provider") or "-"),
        str(item.get("model") or "-"),
        str(item.get("status") or "-"),
        str(item.get("outcome") or "-"),
        _num(item.get("ttft_ms"), " ms"),
        _num(item.get("duration_ms"), " ms"),
        str(item.get("output_tokens", 0)),
    )


def totals_line(totals: Feed, routes: int) -> str:
    return (
        f"routes {routes}  |  req/min {totals.get('requests_per_min', 0)}  |  "
        f"req/hour {totals.get('requests_hour', 0)}  |  tokens/hour {totals.get('tokens_hour', 0)}"
        f"  |  in flight {totals.get('in_flight', 0)}  |  open circuits "
        f"{totals.get('open_circuits', 0)}"
    )


class MonitorApp(App[None]):
    """Polls `fetch` every `interval` seconds and redraws the tables."""

    TITLE = "anthropic-proxy monitor"
    CSS = """
    #totals { padding: 0 1; background: $boost; }
    #status { padding: 0 1; color: $warning; }
    .caption { padding: 0 1; text-style: bold; }
    #routes { height: 1fr; }
    #recent { height: 1fr; }
    """
    BINDINGS: ClassVar = [Binding("q", "quit", "Quit")]

    def __init__(self, fetch: Fetch, interval: float = 1.0, source: str = "") -> None:
        super().__init__()
        self.fetch = fetch
        self.interval = interval
        self.source = source
        self.last_feed: Feed | None = None
        self.last_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("waiting for the first figures...", id="totals")
        yield Static("", id="status")
        yield Static("Routes", classes="caption")
        yield DataTable(id="routes", cursor_type="row", zebra_stripes=True)
        yield Static("Recent requests (newest first)", classes="caption")
        yield DataTable(id="recent", cursor_type="row", zebra_stripes=True)
        yield Footer()

    async def on_mount(self) -> None:
        self.sub_title = self.source
        self.query_one("#routes", DataTable).add_columns(*ROUTE_COLUMNS)
        self.query_one("#recent", DataTable).add_columns(*RECENT_COLUMNS)
        self.set_interval(self.interval, self.poll)
        await self.poll()

    async def poll(self) -> None:
        """One fetch and redraw; a failure only changes the status line (we keep polling)."""
        try:
            feed = await self.fetch()
        except (httpx.HTTPError, ValueError, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            message = f"server unreachable ({self.last_error}); retrying every {self.interval}s"
            self.query_one("#status", Static).update(message)
            return
        self.last_error = None
        self.last_feed = feed
        self.query_one("#status", Static).update("")
        self.show(feed)

    def show(self, feed: Feed) -> None:
        routes = feed.get("routes") or []
        self.query_one("#totals", Static).update(totals_line(feed.get("totals") or {}, len(routes)))
        _fill(
            self.query_one("#routes", DataTable),
            [(f"{r['provider']}/{r['model']}", route_cells(r)) for r in routes],
        )
        recent = feed.get("recent") or []
        _fill(
            self.query_one("#recent", DataTable),
            [(str(i), recent_cells(item)) for i, item in enumerate(recent)],
        )


def _fill(table: DataTable, rows: list[tuple[str, tuple[str, ...]]]) -> None:
    """Replace the rows, keeping the cursor on the same line where possible."""
    cursor = table.cursor_row
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if rows:
        table.move_cursor(row=min(cursor, len(rows) - 1))


class Command(BaseCommand):
    help = "Watch live traffic in the terminal (polls GET /live.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8080", help="the proxy's URL")
        parser.add_argument("--token", default=None, help="METRICS_TOKEN, when the proxy sets one")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")

    def handle(self, *args: Any, url: str, token: str | None, interval: float, **_: Any) -> None:
        MonitorApp(http_fetcher(url, token), interval=max(0.2, interval), source=url).run()
