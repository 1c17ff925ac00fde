"""The Markdown table (stdout and latest.md) and the raw numbers (latest.json)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.runner import RunResult
from bench.stats import Row, percentile

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = (
    "scenario",
    "target",
    "req/s",
    "p50 ms",
    "p99 ms",
    "+p50 ms",
    "+p99 ms",
    "TTFT p50",
    "+TTFT p50",
    "CPU s/1k req",
    "CPU µs/chunk",
    "RSS peak MB",
    "errors",
)
TABLE_NOTE = (
    "Latencies in ms from the client's side; +p50/+p99/+TTFT = target minus direct to the "
    "same fake in the same scenario; TTFT = first content event (streams only); CPU = the "
    "target's own process tree (none for direct), per 1,000 requests and, for streams, per "
    "SSE event delivered (= CPU per request / events per reply); RSS = peak of that process "
    "tree during the scenario's measured phases."
)


CPU_NOTE = (
    "cores busy = CPU of proxy + fake + load generator per wall second of the measured phase; "
    "other procs = the rest of the machine in the same window (noise from other work)."
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _source_state() -> str:
    """The commit under test and how many files differ from it (read-only git calls)."""
    root = RESULTS_DIR.parent.parent

    def git(*args: str) -> str:
        argv = ["git", "--no-optional-locks", "-C", str(root), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD") or "no commit"
        changed = len(git("status", "--porcelain").splitlines())
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit} + {changed} uncommitted/untracked files"


def machine() -> dict[str, Any]:
    return {
        "source": _source_state(),
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _num(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _cells(row: Row) -> list[str]:
    errors = str(row.errors) + (" (cut short)" if row.truncated else "")
    return [
        row.scenario,
        row.target,
        f"{row.rps:.0f}",
        _num(row.p50, 2),
        _num(row.p99, 2),
        _num(row.added_p50, 2, signed=True),
        _num(row.added_p99, 2, signed=True),
        _num(row.ttft_p50, 2),
        _num(row.added_ttft_p50, 2, signed=True),
        _num(row.cpu_per_1k, 2),
        _num(row.cpu_us_per_chunk, 1),
        _num(row.rss_peak_mb),
        errors,
    ]


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def cpu_table(rows: Sequence[Row]) -> str:
    """Where the two cores went: CPU seconds per 1,000 requests for each process."""
    head = (
        "| scenario | target | proxy | fake upstream | load generator | cores busy | other procs |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row.scenario, row.target, _num(row.cpu_per_1k, 2)]
        cells += [_num(row.fake_cpu_per_1k, 2), _num(row.client_cpu_per_1k, 2)]
        cells += [_num(row.cores_busy, 2), _num(row.other_cores, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _compare_one(scenario: str, rows: Sequence[Row]) -> str:
    ranked = sorted(rows, key=lambda row: row.rps, reverse=True)
    best, runner_up = ranked[0], ranked[1]
    ratio = best.rps / runner_up.rps if runner_up.rps else float("inf")
    return (
        f"- **{scenario}**: {best.target} wins on req/s by {ratio:.2f}x "
        f"({best.rps:.0f} vs {runner_up.rps:.0f}; per round: "
        + "; ".join(f"{r.target} " + "/".join(f"{x:.0f}" for x in r.rps_by_round) for r in rows)
        + "). Added p50: "
        + ", ".join(f"{r.target} {_num(r.added_p50, 2, signed=True)} ms" for r in rows)
        + "."
    )


def comparison(rows: Sequence[Row], servers: Sequence[str]) -> list[str]:
    """The proxy on each ASGI server (`servers`: their target names), head to head on the
    Anthropic-dialect route at the highest concurrency of the run."""
    proxies = [row for row in rows if row.target in servers]
    if len({row.target for row in proxies}) < 2:
        return []
    top = max(int(row.scenario.rsplit("-c", 1)[1]) for row in proxies)
    lines = []
    for scenario in dict.fromkeys(row.scenario for row in proxies):
        if int(scenario.rsplit("-c", 1)[1]) == top:
            lines.append(_compare_one(scenario, [r for r in proxies if r.scenario == scenario]))
    return lines


def noise_note(rows: Sequence[Row], threshold: float = 0.2) -> str | None:
    """A warning when other work on the machine took CPU while the bench measured."""
    busy = [row for row in rows if row.other_cores is not None]
    worst = max(busy, key=lambda row: row.other_cores or 0.0, default=None)
    if worst is None or (worst.other_cores or 0.0) < threshold:
        return None
    mean = sum(row.other_cores or 0.0 for row in busy) / len(busy)
    return (
        f"Other processes used {mean:.2f} cores on average during the measured phases "
        f"(up to {worst.other_cores:.2f} in {worst.scenario}/{worst.target}): on "
        f"{os.cpu_count()} cores, treat small differences as noise."
    )


def render(
    meta: dict[str, Any],
    rows: Sequence[Row],
    notes: Sequence[str],
    sections: Sequence[str] = (),
) -> str:
    """The whole report: the table, then `sections` (Markdown, each with its own heading:
    the Targets, the failover figures), the CPU breakdown and the notes."""
    m = meta["machine"]
    parts = [
        f"# anthropic-proxy bench: {m['date']}",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, {m['platform']}; "
        f"load average before: {' '.join(m['loadavg_before'])}.  ",
        f"Source: {m['source']}.  ",
        f"Settings: {meta['settings_line']}",
        "",
        table(rows),
        "",
        TABLE_NOTE,
    ]
    for section in sections:
        parts += ["", section]
    versus = comparison(rows, meta.get("servers", ()))
    if versus:
        parts += ["", "## ASGI servers", "", *versus]
    parts += ["", "## CPU per 1,000 requests (seconds)", "", cpu_table(rows), "", CPU_NOTE]
    noise = noise_note(rows)
    notes = [*notes, noise] if noise else list(notes)
    if notes:
        parts += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(parts) + "\n"


def run_summary(run: RunResult) -> dict[str, Any]:
    samples = ("latencies", "ttfbs", "ttfts")
    load = {k: v for k, v in run.load.items() if k not in samples}
    for name, key in (("latency", "latencies"), ("ttfb", "ttfbs"), ("ttft", "ttfts")):
        values = run.load.get(key, [])
        for q in (50, 90, 99, 100):
            load[f"{name}_p{q}_ms"] = percentile(values, q)
    summary = {k: v for k, v in asdict(run).items() if k != "load"}
    return {**summary, **load}


def write(
    meta: dict[str, Any],
    rows: Sequence[Row],
    runs: Sequence[RunResult],
    text: str,
    extra: Mapping[str, Any] | None = None,
    where: Path = RESULTS_DIR,
) -> Path:
    """latest.md and latest.json in `where`; `extra` adds top-level keys to the JSON."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "latest.md").write_text(text)
    payload = {
        **meta,
        "columns": list(COLUMNS),
        "rows": [asdict(row) for row in rows],
        "runs": [run_summary(run) for run in runs],
        **(extra or {}),
    }
    (where / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    return where
