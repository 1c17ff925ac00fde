"""The "Targets" section: the issue's performance targets, judged from this run's rows.

Each target is met or not met with the numbers that decide it, or n/a when the run lacks
the rows it needs (LiteLLM's come only with --peers, the workers row only with
--workers-target), so a report never claims what it did not measure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.stats import Row

OURS, THEIRS = "proxy", "litellm"
DIALECTS = (("", "Anthropic"), (" openai", "OpenAI"))  # target-name suffix, label
C1 = ("nonstream-c1", "stream-c1")
C128 = ("nonstream-c128", "stream-c128")
REALISTIC = "realistic-c64"
WORKERS = re.compile(r"^proxy (\d+) workers$")
NEED_PEERS = "n/a (run `make bench-peers`)"
NEED_WORKERS = "n/a (run with `--workers-target 2`)"
# The limits the issue sets.
LATENCY_SHARE = 1 / 5
CPU_SHARE = 1 / 10
CHUNK_CPU_US = 100.0
REALISTIC_ADDED_MS = 20.0
THROUGHPUT_TOLERANCE = 0.03  # "equal to direct": within 3 % (closed-loop clients)
RSS_SHARE = 1 / 3
WORKERS_SPEEDUP = 1.7


@dataclass(frozen=True)
class Verdict:
    goal: str
    status: str  # "met", "not met", or "n/a (...)"
    detail: str = ""


class Rows:
    """The run's rows by (scenario, target)."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = list(rows)
        self.by_key = {(row.scenario, row.target): row for row in rows}

    def get(self, scenario: str, target: str) -> Row | None:
        return self.by_key.get((scenario, target))

    def has_target(self, target: str) -> bool:
        return any(row.target == target for row in self.rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} ms"


def _status(checks: Sequence[bool]) -> str:
    return "met" if all(checks) else "not met"


def _pairs(
    rows: Rows, scenarios: Sequence[str], value: Callable[[Row], float | None]
) -> list[tuple[str, float, float]]:
    """(label, ours, theirs) for each scenario and dialect where both have a value."""
    found = []
    for scenario in scenarios:
        for suffix, dialect in DIALECTS:
            ours, theirs = rows.get(scenario, OURS + suffix), rows.get(scenario, THEIRS + suffix)
            if ours is None or theirs is None:
                continue
            mine, other = value(ours), value(theirs)
            if mine is not None and other is not None:
                found.append((f"{scenario} {dialect}", mine, other))
    return found


def added_latency(rows: Rows) -> Verdict:
    goal = "Added latency p50 at c=1 <= 1/5 of LiteLLM's (non-stream and stream, both dialects)"
    pairs = _pairs(rows, C1, lambda row: row.added_p50)
    if not pairs:
        return Verdict(goal, NEED_PEERS)
    checks = [mine <= max(other, 0.0) * LATENCY_SHARE for _, mine, other in pairs]
    detail = "; ".join(f"{label}: {_ms(mine)} vs {_ms(other)}" for label, mine, other in pairs)
    return Verdict(goal, _status(checks), detail)


def cpu_share(rows: Rows) -> Verdict:
    goal = "CPU per request <= 1/10 of LiteLLM's (every scenario, both dialects)"
    scenarios = list(dict.fromkeys(row.scenario for row in rows.rows))
    pairs = _pairs(rows, scenarios, lambda row: row.cpu_per_1k)
    if not pairs:
        return Verdict(goal, NEED_PEERS)
    ratios = [(mine / other if other else float("inf"), label) for label, mine, other in pairs]
    worst, where = max(ratios)
    best, _ = min(ratios)
    detail = (
        f"ours / LiteLLM's from 1/{1 / best:.1f} to 1/{1 / worst:.1f} (worst: {where}), "
        f"over {len(ratios)} scenario-dialect pairs"
        if worst > 0
        else "no CPU figures"
    )
    return Verdict(goal, _status([ratio <= CPU_SHARE for ratio, _ in ratios]), detail)


def chunk_cpu(rows: Rows) -> Verdict:
    goal = f"Converted streams <= {CHUNK_CPU_US:.0f} us of CPU per chunk (proxy openai)"
    found = [
        (row.cpu_us_per_chunk, row.scenario)
        for row in rows.rows
        if row.target == OURS + " openai" and row.cpu_us_per_chunk is not None
    ]
    if not found:
        return Verdict(goal, "n/a (no stream scenario on the OpenAI route)")
    worst, where = max(found)
    detail = f"worst {worst:.1f} us ({where}); " + ", ".join(
        f"{scenario} {value:.1f}" for value, scenario in found
    )
    return Verdict(goal, _status([value <= CHUNK_CPU_US for value, _ in found]), detail)


def realistic(rows: Rows) -> Verdict:
    goal = (
        f"Realistic stream at c=64: added p50 <= {REALISTIC_ADDED_MS:.0f} ms, "
        "throughput equal to direct (within 3 %)"
    )
    direct = rows.get(REALISTIC, "direct")
    found = [
        (suffix, row)
        for suffix, _ in DIALECTS
        if (row := rows.get(REALISTIC, OURS + suffix)) is not None
    ]
    if direct is None or not found or not direct.rps:
        return Verdict(goal, f"n/a (scenario {REALISTIC} not run)")
    checks, parts = [], []
    for suffix, row in found:
        share = row.rps / direct.rps
        added = row.added_p50
        checks.append(added is not None and added <= REALISTIC_ADDED_MS)
        checks.append(share >= 1 - THROUGHPUT_TOLERANCE)
        parts.append(
            f"{OURS + suffix}: {_ms(added)}, {row.rps:.1f} req/s = {share:.1%} of direct's "
            f"{direct.rps:.1f}"
        )
    return Verdict(goal, _status(checks), "; ".join(parts))


def _peak(rows: Rows, prefix: str) -> float | None:
    peaks = [
        row.rss_peak_mb
        for row in rows.rows
        if row.rss_peak_mb is not None and row.target in (prefix, prefix + " openai")
    ]
    return max(peaks, default=None)


def rss_share(rows: Rows) -> Verdict:
    goal = "RSS <= 1/3 of LiteLLM's under the same load (peak over the run)"
    ours, theirs = _peak(rows, OURS), _peak(rows, THEIRS)
    if ours is None or theirs is None:
        return Verdict(goal, NEED_PEERS)
    detail = f"{ours:.1f} MB vs {theirs:.1f} MB (1/{theirs / ours:.1f})"
    return Verdict(goal, _status([ours <= theirs * RSS_SHARE]), detail)


def workers_speedup(rows: Rows) -> Verdict:
    goal = f"Two workers on two cores >= {WORKERS_SPEEDUP}x one worker at c=128 (req/s)"
    two = [
        row.target
        for row in rows.rows
        if (match := WORKERS.match(row.target)) is not None and match.group(1) == "2"
    ]
    if not two:
        return Verdict(goal, NEED_WORKERS)
    checks, parts = [], []
    for scenario in C128:
        one, many = rows.get(scenario, OURS), rows.get(scenario, two[0])
        if one is None or many is None or not one.rps:
            continue
        speedup = many.rps / one.rps
        checks.append(speedup >= WORKERS_SPEEDUP)
        parts.append(f"{scenario}: {many.rps:.0f} vs {one.rps:.0f} req/s = {speedup:.2f}x")
    if not checks:
        return Verdict(goal, "n/a (no c=128 scenario run)")
    return Verdict(goal, _status(checks), "; ".join(parts))


CHECKS = (added_latency, cpu_share, chunk_cpu, realistic, rss_share, workers_speedup)


def evaluate(rows: Sequence[Row]) -> list[Verdict]:
    indexed = Rows(rows)
    return [check(indexed) for check in CHECKS]


def render(verdicts: Sequence[Verdict]) -> str:
    lines = ["## Targets", "", "| target | verdict | figures |", "|---|---|---|"]
    for verdict in verdicts:
        status = verdict.status if verdict.status != "not met" else "**not met**"
        lines.append(f"| {verdict.goal} | {status} | {verdict.detail or '-'} |")
    return "\n".join(lines)


def as_json(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    return [asdict(verdict) for verdict in verdicts]
