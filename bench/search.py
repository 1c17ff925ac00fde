"""`python -m bench.search --rows 1000000`: the dashboard's request searches on a big log.

Fills a fresh database with realistic RequestLog and Attempt rows (batched executemany,
ids in time order like the log writer's) and times the searches the Requests and API-key
pages run, through the same functions (`dashboard.queries`). SQLite always, in a temporary
DATA_DIR; PostgreSQL too when DATABASE_URL is set: a database `ap_search_bench` is created
next to the one named there and dropped afterwards. Each backend runs in its own child
process, since Django reads its settings once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH_DB = "ap_search_bench"
BATCH = 5000
ROWS_PER_STATEMENT = 100
SEED = 20_260_101
MODELS = (  # (requested model, provider, weight)
    ("claude-sonnet-4-5", "anthropic", 40),
    ("claude-opus-4-1", "anthropic", 8),
    ("claude-haiku-4-5", "openrouter", 15),
    ("claude-3-5-sonnet-latest", "bedrock", 6),
    ("gpt-4o", "openrouter", 8),
    ("deepseek-chat", "deepseek", 9),
    ("glm-4.6", "zai", 6),
    ("qwen3-coder", "openrouter", 5),
    ("kimi-k2", "moonshot", 1),
)
ERRORS = (  # (status, outcome, error type, message template, weight in 1000 requests)
    (429, "error", "rate_limit_error", "rate limited by {p}: retry after {n}s", 20),
    (529, "error", "overloaded_error", "{p} is overloaded (request id req_{n})", 20),
    (500, "error", "api_error", "upstream {p} answered 500: internal error {n}", 10),
    (400, "error", "invalid_request_error", "messages.{n}.content: text must not be empty", 8),
    (504, "error", "timeout_error", "no first token from {p} within 30.0s (attempt {n})", 5),
    (499, "client_cancelled", "", "client went away after {n} ms", 10),
)
AGENTS = ("claude-cli/2.0.14 (external, cli)", "anthropic-python/0.69.0", "curl/8.5.0")


def bench_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{BENCH_DB}"))


def _admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


# ---------------------------------------------------------------- the child: fill and time


def _pick(rng: random.Random, table: Sequence[Any], weights: Sequence[float]) -> Any:
    return rng.choices(table, weights=weights, k=1)[0]


def _outcome(rng: random.Random) -> tuple[int, str, str, str]:
    roll = rng.random() * 1000
    for status, outcome, kind, template, weight in ERRORS:
        if roll < weight:
            text = template.format(p=rng.choice(MODELS)[1], n=rng.randint(1, 99_999))
            return status, outcome, kind, text
        roll -= weight
    return 200, "ok", "", ""


def _timing(rng: random.Random, ok: bool, output: int) -> tuple[float | None, float, float | None]:
    """(TTFT, duration, TPS) in ms and tokens per second; errors have no first token."""
    if not ok:
        return None, rng.lognormvariate(math.log(900), 1.0), None
    ttft = rng.lognormvariate(math.log(700), 0.6)
    tps = rng.lognormvariate(math.log(60), 0.4)
    return ttft, ttft + output / tps * 1000, tps


def _attempts(rng: random.Random, request_id: int, row: dict[str, Any]) -> list[tuple]:
    tries = 1 if rng.random() < 0.88 else (2 if rng.random() < 0.85 else 3)
    out, started = [], 0.0
    for seq in range(1, tries + 1):
        last = seq == tries
        duration = row["duration_ms"] - started if last else rng.uniform(50, 3000)
        outcome = ("won" if row["outcome"] == "ok" else "failed") if last else "failed"
        status = row["status"] if last else rng.choice((429, 529, 500))
        kind = "" if outcome == "won" else "http_status"
        ttft = row["ttft_ms"] - started if last and row["ttft_ms"] else None
        out.append(
            (request_id, seq, row["provider"], row["upstream_model"], started, ttft,
             max(duration, 1.0), status, kind, "", outcome)
        )  # fmt: skip
        started += duration + rng.uniform(0, 30)
    return out


def _request(rng: random.Random, created: datetime, keys: list[tuple[int, str]]) -> dict:
    model, provider, _ = _pick(rng, MODELS, [m[2] for m in MODELS])
    status, outcome, kind, message = _outcome(rng)
    key_id, key_name = _pick(rng, keys, [1 / (n + 1) for n in range(len(keys))])
    output = int(rng.lognormvariate(math.log(400), 1.0)) if outcome == "ok" else 0
    ttft, duration, tps = _timing(rng, outcome == "ok", output)
    skip = rng.random() < 0.05
    return {
        "created_at": created, "api_key_id": key_id, "api_key_name": key_name,
        "path": "/v1/messages", "requested_model": model, "stream": rng.random() < 0.8,
        "provider": provider, "upstream_model": model, "status": status, "outcome": outcome,
        "error_type": kind, "error_message": message,
        "input_tokens": int(rng.lognormvariate(math.log(6000), 1.2)), "output_tokens": output,
        "cache_read_tokens": 0, "cache_creation_tokens": 0, "ttft_ms": ttft,
        "duration_ms": duration, "tps": tps, "attempt_count": 1, "user_agent": rng.choice(AGENTS),
        "skipped": [{"provider": "zai", "model": model, "reason": "circuit open"}] if skip else [],
        "request_body": "", "response_body": "",
    }  # fmt: skip


def _generate(
    rows: int, now: datetime, keys: list[tuple[int, str]]
) -> Iterator[tuple[dict, list[tuple]]]:
    """Requests spread evenly over the last 30 days, oldest first, with their attempts."""
    rng = random.Random(SEED)
    step = timedelta(days=30) / rows
    start = now - timedelta(days=30)
    for n in range(rows):
        created = start + step * n + timedelta(microseconds=rng.randint(0, 999))
        row = _request(rng, created, keys)
        attempts = _attempts(rng, n + 1, row)
        row["attempt_count"] = len(attempts)
        yield row, attempts


def _insert_sql(model: Any, rows: int = 1) -> tuple[str, list[Any]]:
    """An INSERT of `rows` rows per statement: far fewer round trips than one per row."""
    from django.db import connection

    fields = list(model._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * rows)
    return f"INSERT INTO {model._meta.db_table} ({columns}) VALUES {marks}", fields


def _insert(model: Any, rows: list[tuple]) -> None:
    """executemany over chunks of ROWS_PER_STATEMENT rows, then the remainder."""
    from django.db import connection

    whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
    chunks = [
        [value for row in rows[i : i + ROWS_PER_STATEMENT] for value in row]
        for i in range(0, whole, ROWS_PER_STATEMENT)
    ]
    # psycopg's own cursor binds on the server: no quoting of every value in Python
    connection.ensure_connection()
    raw = connection.vendor == "postgresql"
    with connection.connection.cursor() if raw else connection.cursor() as cursor:
        if chunks:
            cursor.executemany(_insert_sql(model, ROWS_PER_STATEMENT)[0], chunks)
        if rows[whole:]:
            rest = [value for row in rows[whole:] for value in row]
            cursor.execute(_insert_sql(model, len(rows) - whole)[0], rest)


def _flush(requests: list[tuple], attempts: list[tuple]) -> None:
    from django.db import transaction

    from gateway.models import Attempt, RequestLog

    with transaction.atomic():
        _insert(RequestLog, requests)
        _insert(Attempt, attempts)
    requests.clear()
    attempts.clear()


def fill(rows: int, now: datetime) -> list[tuple[int, str]]:
    """Insert `rows` requests (and their attempts) in batches; returns the keys by traffic."""
    from django.db import connection

    from gateway.models import ApiKey, Attempt, RequestLog

    keys = [
        (ApiKey.objects.create(name=f"key-{n:02d}", prefix=f"sk-ap-{n:06d}").pk, f"key-{n:02d}")
        for n in range(20)
    ]
    fields = _insert_sql(RequestLog)[1]
    skipped = RequestLog._meta.get_field("skipped")
    created_at = connection.ops.adapt_datetimefield_value
    requests: list[tuple] = []
    attempts: list[tuple] = []
    next_attempt = 1
    for n, (row, tries) in enumerate(_generate(rows, now, keys), start=1):
        row["skipped"] = skipped.get_db_prep_save(row["skipped"], connection)
        row["created_at"] = created_at(row["created_at"])
        requests.append((n, *(row[f.attname] for f in fields[1:])))
        attempts.extend((next_attempt + i, *t) for i, t in enumerate(tries))
        next_attempt += len(tries)
        if len(requests) >= BATCH:
            _flush(requests, attempts)
    _flush(requests, attempts)
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(_no_style(), [RequestLog, Attempt]):
            cursor.execute(sql)
    return keys


def _no_style() -> Any:
    from django.core.management.color import no_style

    return no_style()


def _median_ms(run: Callable[[], Any], repeat: int) -> tuple[float, int]:
    result = run()  # warm-up: the first run pays for cold pages and plan caches
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - started) * 1000)
    size = len(result.rows) if hasattr(result, "rows") else len(result)
    return statistics.median(times), size


def request_searches(now: datetime, top: int, small: int) -> dict[str, dict[str, Any]]:
    """The Requests page's typical searches: name -> RequestFilters fields."""
    day, week = now - timedelta(days=1), now - timedelta(days=7)
    return {
        "newest, no filter": {},
        "oldest first": {"sort": "oldest"},
        "last hour": {"since": now - timedelta(hours=1)},
        "last 24 h, slowest first": {"since": day, "sort": "slowest"},
        "model (15 %)": {"model": "claude-haiku-4-5"},
        "rare model (1 %)": {"model": "kimi-k2"},
        "provider + 5xx": {"provider": "openrouter", "status": "5xx"},
        "API key (small)": {"api_key": small},
        "status 429": {"status": "429"},
        "outcome error": {"outcome": "error"},
        "outcome client_cancelled, last 7 days": {"outcome": "client_cancelled", "since": week},
        "error text, common": {"error_text": "overloaded"},
        "error text, rare": {"error_text": "req_4242"},
        "error text, absent": {"error_text": "no such text"},
        "error text, absent, last 24 h": {"error_text": "no such text", "since": day},
        "slowest overall": {"sort": "slowest"},
        "TTFT slowest overall": {"sort": "ttft_slowest"},
        "TTFT quickest overall": {"sort": "ttft_quickest"},
        "last 10 min, slowest first": {"since": now - timedelta(minutes=10), "sort": "slowest"},
        "model (15 %), slowest first": {"model": "claude-haiku-4-5", "sort": "slowest"},
        "outcome error, slowest first": {"outcome": "error", "sort": "slowest"},
        "status 504, TTFT slowest (none has one)": {"status": "504", "sort": "ttft_slowest"},
        "key + model + 7 days, slowest": {
            "api_key": top, "model": "claude-sonnet-4-5", "since": week, "sort": "slowest"
        },
    }  # fmt: skip


def searches(now: datetime, keys: list[tuple[int, str]]) -> dict[str, Callable[[], Any]]:
    """Every timed search, by the name printed in the table."""
    from dashboard import queries
    from dashboard.queries import Cursor, RequestFilters
    from gateway.models import RequestLog

    deep_row = RequestLog.objects.order_by("-created_at", "-id")[10_000]
    deep = Cursor(deep_row.created_at, deep_row.pk).encode()
    top, small = keys[0][0], keys[15][0]

    def find(fields: dict[str, Any], after: str = "", before: str = "") -> Callable[[], Any]:
        return lambda: queries.search(RequestFilters(**fields), after=after, before=before)

    timed = {name: find(fields) for name, fields in request_searches(now, top, small).items()}
    return {
        **timed,
        "newest, 200 pages deep (after)": find({}, after=deep),
        "page above a deep page (before)": find({}, before=deep),
        "filter suggestions (latest 2000)": lambda: list(queries.recent_values().items()),
        "detail: request + attempts": lambda: queries.request_with_attempts(deep_row.pk)[1],
        "keys page: usage 24 h / 30 d": lambda: list(queries.key_usage(now).items()),
        "key page: 30 days, busiest key": lambda: queries.daily_usage(top, now.date()),
        "key page: 30 days, small key": lambda: queries.daily_usage(small, now.date()),
    }


def worker(rows: int, repeat: int) -> dict[str, Any]:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    now = timezone.now()
    started = time.perf_counter()
    keys = fill(rows, now)
    filled = time.perf_counter() - started
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")  # what autovacuum would have done by now
    timings = {}
    for name, run in searches(now, keys).items():
        timings[name] = _median_ms(run, repeat)
    return {"vendor": connection.vendor, "fill_s": filled, "timings": timings}


# ------------------------------------------------------------------- the parent: run, print


def run_child(rows: int, repeat: int, env: dict[str, str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.search", "--worker", "--rows", str(rows)]
    argv += ["--repeat", str(repeat)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        backend = "PostgreSQL" if env.get("DATABASE_URL") else "SQLite"
        raise SystemExit(f"the {backend} run failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_all(rows: int, repeat: int, database_url: str) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ap-search-") as data_dir:
        env = {**os.environ, "DATA_DIR": data_dir}
        env.pop("DATABASE_URL", None)
        print(f"SQLite: filling {rows:,} requests ...", file=sys.stderr, flush=True)
        results.append(run_child(rows, repeat, env))
        if database_url:
            _admin(database_url, f"DROP DATABASE IF EXISTS {BENCH_DB}")
            _admin(database_url, f"CREATE DATABASE {BENCH_DB}")
            print(f"PostgreSQL: filling {rows:,} requests ...", file=sys.stderr, flush=True)
            try:
                results.append(
                    run_child(rows, repeat, {**env, "DATABASE_URL": bench_url(database_url)})
                )
            finally:
                _admin(database_url, f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    return results


def table(rows: int, results: list[dict[str, Any]]) -> str:
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    heads = [names.get(r["vendor"], r["vendor"]) for r in results]
    lines = [
        f"{rows:,} requests; median of the runs after one warm-up, in ms; "
        f"page size 50 (rows shown = what the search returned).",
        "",
        "| search | rows | " + " | ".join(f"{h} ms" for h in heads) + " |",
        "|---|---:|" + "---:|" * len(heads),
    ]
    for name, (_, size) in results[0]["timings"].items():
        cells = [f"{r['timings'][name][0]:.1f}" for r in results]
        lines.append(f"| {name} | {size} | " + " | ".join(cells) + " |")
    fills = ", ".join(f"{h} {r['fill_s']:.0f} s" for h, r in zip(heads, results, strict=True))
    lines += ["", f"Fill time (requests + attempts, indexes in place): {fills}."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="requests to insert")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per search")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows < 20_000:
        parser.error("--rows: at least 20000 (the deep-page search starts 10000 rows down)")
    if args.worker:
        print(json.dumps(worker(args.rows, args.repeat)))
        return 0
    results = run_all(args.rows, args.repeat, os.environ.get("DATABASE_URL", ""))
    print(table(args.rows, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
