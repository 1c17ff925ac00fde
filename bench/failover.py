"""The failover figures: the time to first byte a streaming client sees when the first
candidate route fails, against the same proxy's healthy single-route baseline.

Every case asks a failover proxy (bench/stack.py, uvicorn) for a model whose first
candidate by weight is a faulty upstream model on the fake (bench/upstream_proc.py: a 529,
a TCP reset before any reply, or a hang) and whose second is the healthy route. The proxy
sends the client nothing before the first content event, so the client's TTFB is when the
winning route's first token arrives. Warm-ups ask the healthy model, so the circuit-breaker
case starts its measured phase with a closed circuit.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import report, stack
from bench.runner import RunResult, Scenario, Target, run_one
from bench.stats import percentile

WARMUP_MODEL = "bench-1"
FULL_CONCURRENCY = (1, 8)
QUICK_CONCURRENCY = (1,)
TIME_LIMIT = {False: 60.0, True: 20.0}  # seconds per measured phase: full, quick
HANG = f"`firstTokenTimeout: {stack.FIRST_TOKEN_TIMEOUT}`"
HEDGE = f"`hedgeAfter: {stack.HEDGE_AFTER}`"


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    model: str  # what the client asks for
    proxy: str  # which failover proxy: a label of stack.FAILOVER_PROXIES
    full: tuple[int, ...]  # requests per concurrency in FULL_CONCURRENCY; 0 = not run
    quick: tuple[int, ...]  # the same for QUICK_CONCURRENCY
    interleave: bool = False  # split over ROUNDS runs, alternating with the other such cases


CASES = (
    Case("healthy", "healthy (single route)", "bench-1", "failover", (300, 600), (20,), True),
    Case("529", "529 overloaded", "fo-529-1", "failover", (300, 600), (20,), True),
    Case("reset", "reset before reply", "fo-reset-1", "failover", (300, 600), (20,), True),
    # 2 s per request by construction: few of them
    Case("hang", f"hang, no hedge ({HANG})", "fo-hang-1", "failover", (20, 24), (3,)),
    Case("hedge", f"hang, hedged ({HEDGE})", "fo-hedge-1", "failover", (50, 200), (10,)),
    # One run only: the circuit it opens stays open (30 s) into any later run.
    Case("529-cb", "529, circuit breaker (defaults)", "fo-529-1", "circuit", (100, 0), (20,)),
)
# Rounds of the interleaved cases in the full run (order flipped every other round), so
# that drift on a shared machine hits the healthy baseline and the faults alike.
ROUNDS = 3


@dataclass(frozen=True)
class Step:
    case: Case
    concurrency: int
    requests: int
    round: int = 1


@dataclass
class FailoverRow:
    case: str
    label: str
    concurrency: int
    rounds: int
    requests: int
    ok: int
    errors: int
    error_kinds: dict[str, int]
    ttfb_p50: float | None
    ttfb_p99: float | None
    ttfb_max: float | None
    ttfb_p50_by_round: list[float | None]
    added_p50: float | None = None  # TTFB p50 minus the healthy row's, same concurrency
    truncated: bool = False


@dataclass
class Outcome:
    rows: list[FailoverRow] = field(default_factory=list)
    runs: list[RunResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan(quick: bool) -> list[Step]:
    """In run order, per concurrency: the interleaved cases round by round, then the rest."""
    levels = QUICK_CONCURRENCY if quick else FULL_CONCURRENCY
    rounds = 1 if quick else ROUNDS
    steps = []
    for i, concurrency in enumerate(levels):
        counted = [(case, (case.quick if quick else case.full)[i]) for case in CASES]
        mixed = [(case, n) for case, n in counted if n and case.interleave]
        for round_no in range(1, rounds + 1):
            order = mixed if round_no % 2 else mixed[::-1]
            steps += [Step(case, concurrency, n // rounds, round_no) for case, n in order]
        steps += [Step(case, concurrency, n) for case, n in counted if n and not case.interleave]
    return steps


def execute(running: stack.Stack, quick: bool) -> list[tuple[Case, RunResult]]:
    steps = plan(quick)
    results = []
    for number, step in enumerate(steps, start=1):
        case, concurrency = step.case, step.concurrency
        proxy = running.failover[case.proxy]
        if proxy.proc.poll() is not None:
            raise stack.procs.ChildFailed(f"the {case.proxy} proxy exited {proxy.proc.returncode}")
        warmup = max(5, 2 * concurrency)
        sc = Scenario(f"failover-c{concurrency}", True, concurrency, step.requests, warmup)
        target = Target(
            f"failover {case.key}",
            proxy.port,
            proxy.proc.pid,
            model=case.model,
            server=case.proxy,
            warmup_model=WARMUP_MODEL,
        )
        limit = TIME_LIMIT[quick]
        # settle=0: no CPU figures are reported here, so no pause after each run
        result = run_one(sc, target, running.fake.pid, step.round, running.workdir, limit, 0.0)
        proxy.sent += warmup + int(result.load["requests"])
        results.append((case, result))
        load = result.load
        print(
            f"[failover {number}/{len(steps)}] {case.key} c{concurrency} r{step.round}: "
            f"{load['ok']} ok, {load['errors']} errors, "
            f"TTFB p50 {percentile(load['ttfbs'], 50) or 0:.1f} ms",
            file=sys.stderr,
            flush=True,
        )
    return results


def _row(case: Case, runs: Sequence[RunResult]) -> FailoverRow:
    """The rounds of one (case, concurrency) pooled: samples merged, counts summed."""
    ttfbs = [x for run in runs for x in run.load["ttfbs"]]
    kinds: Counter[str] = Counter()
    for run in runs:
        kinds.update(run.load["error_kinds"])
    return FailoverRow(
        case=case.key,
        label=case.label,
        concurrency=int(runs[0].scenario.rsplit("-c", 1)[1]),
        rounds=len(runs),
        requests=sum(int(run.load["requests"]) for run in runs),
        ok=sum(int(run.load["ok"]) for run in runs),
        errors=sum(kinds.values()),
        error_kinds=dict(kinds),
        ttfb_p50=percentile(ttfbs, 50),
        ttfb_p99=percentile(ttfbs, 99),
        ttfb_max=max(ttfbs, default=None),
        ttfb_p50_by_round=[percentile(run.load["ttfbs"], 50) for run in runs],
        truncated=any(bool(run.load["truncated"]) for run in runs),
    )


def make_rows(results: Sequence[tuple[Case, RunResult]]) -> list[FailoverRow]:
    """One row per (case, concurrency), at c=1 first, cases in CASES order."""
    pooled: dict[tuple[int, int], list[RunResult]] = {}
    for case, run in results:
        concurrency = int(run.scenario.rsplit("-c", 1)[1])
        pooled.setdefault((concurrency, CASES.index(case)), []).append(run)
    rows = [_row(CASES[index], runs) for (_, index), runs in sorted(pooled.items())]
    healthy = {r.concurrency: r.ttfb_p50 for r in rows if r.case == "healthy"}
    for row in rows:
        base = healthy.get(row.concurrency)
        if row.case != "healthy" and base is not None and row.ttfb_p50 is not None:
            row.added_p50 = row.ttfb_p50 - base
    return rows


def _ms(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def table(rows: Sequence[FailoverRow]) -> str:
    head = "| case | c | requests | TTFB p50 ms | TTFB p99 ms | added vs healthy p50 ms | errors |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for row in rows:
        errors = str(row.errors) + (" (cut short)" if row.truncated else "")
        if row.error_kinds:
            errors += " (" + ", ".join(f"{k} {n}" for k, n in row.error_kinds.items()) + ")"
        cells = [row.label, str(row.concurrency), str(row.requests)]
        cells += [_ms(row.ttfb_p50), _ms(row.ttfb_p99), _ms(row.added_p50, signed=True), errors]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _log_notes(running: stack.Stack) -> list[str]:
    """What each failover proxy's request log says the faulty route did (read after stop)."""
    notes = []
    for label, proxy in running.failover.items():
        tallies = stack.faulty_attempts(proxy)
        parts = []
        for model, tally in sorted(tallies.items()):
            if model == WARMUP_MODEL:
                parts.append(f"{model} {tally.requests} (warm-ups included), {tally.ok} ok")
                continue
            ends = ", ".join(f"{kind} {n}" for kind, n in sorted(tally.ends.items()))
            parts.append(
                f"{model} {tally.requests}, {tally.ok} ok, {tally.tried_faulty} tried "
                f"`{stack.FAULTY_PROVIDER}` first" + (f" ({ends})" if ends else "")
            )
        count, lines = stack.log_problems(proxy)
        text = f"{label} proxy request log: " + ("; ".join(parts) or "unreadable") + "."
        if count:
            shown = " / ".join(line.strip()[:160] for line in lines[:2])
            text += f" {count} warning/error lines in its output, e.g. `{shown}`."
        notes.append(text)
    return notes


def render(rows: Sequence[FailoverRow], notes: Sequence[str]) -> str:
    parts = [
        "## Failover: time to first byte",
        "",
        table(rows),
        "",
        "Stream requests on uvicorn; TTFB = first response body byte seen by the client "
        "(the proxy sends nothing before the winning route's first content event). Each "
        "fault is the first candidate (weight 9) on the same fake, the healthy route "
        "second (weight 1); `healthy` asks the same proxy for a single healthy route. "
        "Warm-ups ask the healthy model. In the full run, healthy, 529 and reset are pooled "
        f"from {ROUNDS} interleaved rounds each (per-round p50s in latest.json).",
        "",
        "- Circuit breaker disabled in effect (`failureThreshold`/`minRequests` 1,000,000) "
        "on every row but the last, so every request pays the failover it measures.",
        f"- hang, no hedge: dominated by `firstTokenTimeout: {stack.FIRST_TOKEN_TIMEOUT}` by "
        "construction (the faulty route is abandoned at that deadline); few requests, so "
        "its p99 is close to its maximum.",
        f"- hedge: `hedgeAfter: {stack.HEDGE_AFTER}` on the hanging route starts the healthy "
        "one after that delay; the first to produce content wins, the other is cancelled.",
        "- circuit breaker (defaults): a second uvicorn proxy with the same routes and no "
        "circuit override (circuit settings are global): 5 consecutive failures open the "
        "faulty route's circuit for 30 s, so only the first requests of the run pay the "
        "failover and the rest skip that route; run once, at c=1, from a closed circuit.",
        *(f"- {note}" for note in notes),
    ]
    return "\n".join(parts)


def _noise_note(runs: Sequence[RunResult]) -> str | None:
    """How busy the rest of the machine was during the failover runs' measured phases."""
    window = sum(run.window for run in runs)
    if window <= 0:
        return None
    ours = sum(
        run.fake_cpu + float(run.load["client_cpu"]) + (run.target_cpu_window or 0.0)
        for run in runs
    )
    others = max(0.0, sum(run.machine_cpu for run in runs) - ours) / window
    return f"Other processes used {others:.2f} cores on average during these runs."


def finish(running: stack.Stack, results: Sequence[tuple[Case, RunResult]]) -> Outcome:
    """Rows, runs and notes, once the proxies have stopped and their logs are complete."""
    runs = [run for _, run in results]
    notes = _log_notes(running)
    noise = _noise_note(runs)
    return Outcome(make_rows(results), runs, [*notes, noise] if noise else notes)


def as_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "rows": [asdict(row) for row in outcome.rows],
        "runs": [report.run_summary(run) for run in outcome.runs],
        "notes": outcome.notes,
        "settings": {
            "firstTokenTimeout": stack.FIRST_TOKEN_TIMEOUT,
            "hedgeAfter": stack.HEDGE_AFTER,
            "warmup_model": WARMUP_MODEL,
        },
    }
