"""The request-log searches and key usage figures behind the dashboard (sync ORM only).

Pages are cut by keyset (the sort value and id of the row at the edge), so a deep page
costs what the first one does; there is no total count, which on a million rows would cost
more than the page itself. Call these through `sync_to_async` from the async views.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, DateField, F, Func, Q, QuerySet, Sum, Value
from django.utils import timezone

from gateway.models import ApiKey, Attempt, RequestLog

PAGE_SIZE = 50
DENSE = 20_000  # matches from which walking the duration/TTFT index beats sorting them
USAGE_DAYS = 30
# What a results row shows; the bodies and skip reasons stay on the detail page.
LIST_FIELDS = (
    "id",
    "created_at",
    "api_key_name",
    "requested_model",
    "stream",
    "provider",
    "upstream_model",
    "status",
    "outcome",
    "error_type",
    "error_message",
    "input_tokens",
    "output_tokens",
    "ttft_ms",
    "duration_ms",
    "tps",
    "attempt_count",
)


@dataclass(frozen=True)
class Sort:
    field: str
    descending: bool
    label: str


SORTS: dict[str, Sort] = {
    "newest": Sort("created_at", True, "Newest first"),
    "oldest": Sort("created_at", False, "Oldest first"),
    "slowest": Sort("duration_ms", True, "Duration, longest first"),
    "quickest": Sort("duration_ms", False, "Duration, shortest first"),
    "ttft_slowest": Sort("ttft_ms", True, "TTFT, longest first (with a first token)"),
    "ttft_quickest": Sort("ttft_ms", False, "TTFT, shortest first (with a first token)"),
}
DEFAULT_SORT = "newest"


@dataclass(frozen=True)
class RequestFilters:
    """One search of the request log; empty values do not filter."""

    since: datetime | None = None
    until: datetime | None = None
    model: str = ""
    provider: str = ""
    api_key: int | None = None
    status: str = ""  # an exact code ("429") or a class ("5xx")
    outcome: str = ""
    error_text: str = ""
    sort: str = DEFAULT_SORT

    @property
    def order(self) -> Sort:
        return SORTS.get(self.sort, SORTS[DEFAULT_SORT])

    @property
    def narrows(self) -> bool:
        given = (self.since, self.until, self.model, self.provider, self.api_key, self.status)
        return any(value not in ("", None) for value in (*given, self.outcome, self.error_text))


@dataclass(frozen=True)
class Cursor:
    """The sort value and id of the row at one edge of a page, as carried in the URL."""

    value: datetime | float
    pk: int

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else repr(self.value)
        return f"{value}~{self.pk}"

    @classmethod
    def decode(cls, text: str, sort: Sort) -> Cursor | None:
        """The cursor in `text`, or None when it is missing or malformed (first page)."""
        raw, _, pk = text.rpartition("~")
        try:
            if sort.field == "created_at":
                moment = datetime.fromisoformat(raw)
                if timezone.is_naive(moment):
                    return None
                return cls(moment, int(pk))
            return cls(float(raw), int(pk))
        except ValueError:
            return None

    @classmethod
    def of(cls, row: RequestLog, sort: Sort) -> Cursor:
        return cls(getattr(row, sort.field), row.pk)


@dataclass(frozen=True)
class Page:
    rows: list[RequestLog]
    previous: Cursor | None  # pass as `before` for the page above
    next: Cursor | None  # pass as `after` for the page below


def status_range(status: str) -> Q:
    """`429` matches that code, `4xx` the whole class; anything else matches nothing."""
    if len(status) == 3 and status[0] in "12345" and status[1:].lower() == "xx":
        low = int(status[0]) * 100
        return Q(status__gte=low, status__lt=low + 100)
    if status.isdigit():
        return Q(status=int(status))
    return Q(pk__in=[])


def filtered(filters: RequestFilters) -> QuerySet[RequestLog]:
    exact = {
        "requested_model": filters.model,
        "provider": filters.provider,
        "api_key_id": filters.api_key,
        "outcome": filters.outcome,
    }
    condition = Q(**{name: value for name, value in exact.items() if value not in ("", None)})
    if filters.since is not None:
        condition &= Q(created_at__gte=filters.since)
    if filters.until is not None:
        condition &= Q(created_at__lt=filters.until)
    if filters.status:
        condition &= status_range(filters.status)
    if filters.error_text:
        text = filters.error_text
        # every logged error has a message; `> ''` lets the log_errors partial index serve
        condition &= Q(error_message__gt="") & (
            Q(error_message__icontains=text) | Q(error_type__icontains=text)
        )
    if filters.order.field == "ttft_ms":
        condition &= Q(ttft_ms__isnull=False)  # a TTFT ranking has no place for the rest
    return RequestLog.objects.filter(condition)


def _beyond(field: str, cursor: Cursor, descending: bool) -> Q:
    """Rows strictly past the cursor in (field, id) order; the first term can use an index."""
    strict, loose = ("lt", "lte") if descending else ("gt", "gte")
    return Q(**{f"{field}__{loose}": cursor.value}) & (
        Q(**{f"{field}__{strict}": cursor.value}) | Q(**{f"pk__{strict}": cursor.pk})
    )


def _sort_key(rows: QuerySet[RequestLog], filters: RequestFilters) -> tuple[QuerySet, str]:
    """Walk the duration/TTFT index only for many matches; few ones, or ones bunched at its
    far end (504s have no TTFT), are cheaper to sort. `field + 0` keeps the planner from
    walking it anyway (SQLite has no range statistics). Text matches are few: errors only."""
    field = filters.order.field
    if field == "created_at" or not filters.narrows:
        return rows, field
    if not filters.error_text and rows.order_by()[:DENSE].count() >= DENSE:
        return rows, field
    return rows.alias(sort_key=F(field) + Value(0.0)), "sort_key"


def search(
    filters: RequestFilters, after: str = "", before: str = "", size: int = PAGE_SIZE
) -> Page:
    """One page of matching requests; `before` (page above) wins over `after` (page below)."""
    sort = filters.order
    text = before or after
    cursor = Cursor.decode(text, sort) if text else None
    backwards = bool(before) and cursor is not None
    descending = sort.descending != backwards
    rows_qs, key = _sort_key(filtered(filters).only(*LIST_FIELDS), filters)
    if cursor is not None:
        rows_qs = rows_qs.filter(_beyond(key, cursor, descending))
    order = [f"-{name}" if descending else name for name in (key, "id")]
    rows = list(rows_qs.order_by(*order)[: size + 1])
    more, rows = len(rows) > size, rows[:size]
    if backwards:
        rows.reverse()
    if not rows:
        return Page([], None, None)
    first, last = Cursor.of(rows[0], sort), Cursor.of(rows[-1], sort)
    if backwards:
        return Page(rows, first if more else None, last)
    return Page(rows, first if cursor is not None else None, last if more else None)


def recent_values(sample: int = 2000) -> dict[str, list[str]]:
    """Models and providers seen in the latest requests, as suggestions for the filters."""
    latest = RequestLog.objects.order_by("-created_at").values_list("requested_model", "provider")
    models: set[str] = set()
    providers: set[str] = set()
    for model, provider in latest[:sample]:
        models.add(model)
        providers.add(provider)
    return {"models": sorted(models - {""}), "providers": sorted(providers - {""})}


def request_with_attempts(pk: int) -> tuple[RequestLog, list[Attempt]]:
    """Raises RequestLog.DoesNotExist for an unknown id."""
    row = RequestLog.objects.select_related("api_key").get(pk=pk)
    return row, list(row.attempts.order_by("started_ms", "seq"))


@dataclass(frozen=True)
class Usage:
    requests_day: int = 0
    tokens_day: int = 0
    requests_month: int = 0
    tokens_month: int = 0


def key_usage(now: datetime) -> dict[int, Usage]:
    """Requests and input+output tokens per key over the last 24 hours and 30 days."""
    day = Q(created_at__gte=now - timedelta(days=1))
    tokens = F("input_tokens") + F("output_tokens")
    grouped = (
        RequestLog.objects.filter(
            created_at__gte=now - timedelta(days=USAGE_DAYS), api_key__isnull=False
        )
        .values("api_key_id")
        .annotate(
            requests_day=Count("id", filter=day),
            tokens_day=Sum(tokens, filter=day, default=0),
            requests_month=Count("id"),
            tokens_month=Sum(tokens, default=0),
        )
        .order_by()
    )
    return {row.pop("api_key_id"): Usage(**row) for row in grouped}


@dataclass(frozen=True)
class DayUsage:
    day: date
    requests: int
    input_tokens: int
    output_tokens: int


def utc_day(field: str) -> Func:
    """The UTC date of a timestamp, computed natively in SQLite and PostgreSQL (both keep
    UTC and Django's connections speak UTC), where TruncDate costs SQLite a Python call
    per row."""
    return Func(F(field), function="DATE", output_field=DateField())


def daily_usage(key_id: int, today: date, days: int = USAGE_DAYS) -> list[DayUsage]:
    """One row per UTC day, oldest first, the days without traffic included as zeros."""
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time.min, tzinfo=UTC)
    grouped = (
        RequestLog.objects.filter(api_key_id=key_id, created_at__gte=start)
        .annotate(day=utc_day("created_at"))
        .values("day")
        .annotate(
            requests=Count("id"),
            input_tokens=Sum("input_tokens", default=0),
            output_tokens=Sum("output_tokens", default=0),
        )
        .order_by("day")
    )
    found = {row.pop("day"): row for row in grouped}
    empty = {"requests": 0, "input_tokens": 0, "output_tokens": 0}
    return [
        DayUsage(day, **found.get(day, empty))
        for day in (first + timedelta(days=n) for n in range(days))
    ]


def keys_in_order() -> list[ApiKey]:
    """Usable keys first, then revoked ones; by name within each."""
    return list(ApiKey.objects.order_by(F("revoked_at").asc(nulls_first=True), "name", "pk"))
