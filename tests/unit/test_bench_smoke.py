"""`python -m bench` end to end on a tiny setting, and the Targets verdicts on made-up rows.

The smoke run starts the real processes (two fakes, the proxy, a load generator per run)
for a few requests each, so a broken bench shows up in `make test` rather than in the
next person's `make bench`. No timing is asserted: the machine may be busy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import goals
from bench.stats import Row

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("nonstream-c1", "stream-c2", "realistic-c2", "burst-c2", "bigbody-c1")
TARGETS = ("direct", "proxy", "proxy openai")


def _table_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """The main table's body rows, by (scenario, target): the first table in the report."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| scenario | target |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    found = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        found[cells["scenario"], cells["target"]] = [cells["errors"], cells["req/s"]]
    return found


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("bench-results")
    argv = [sys.executable, "-m", "bench", "--tiny", "--no-failover"]
    argv += ["--scenarios", ",".join(SCENARIOS), "--results-dir", str(results)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| scenario | target |" in done.stdout
    return results


def test_the_table_has_a_row_per_scenario_and_target_without_errors(bench_run: Path) -> None:
    rows = _table_rows((bench_run / "latest.md").read_text())
    assert set(rows) == {(s, t) for s in SCENARIOS for t in TARGETS}
    assert all(errors == "0" for errors, _ in rows.values()), rows


def test_the_json_has_the_rows_runs_and_targets(bench_run: Path) -> None:
    data = json.loads((bench_run / "latest.json").read_text())
    for key in ("machine", "settings_line", "columns", "rows", "runs", "targets", "services"):
        assert key in data
    assert {(r["scenario"], r["target"]) for r in data["rows"]} == {
        (s, t) for s in SCENARIOS for t in TARGETS
    }
    assert all(r["errors"] == 0 and r["ok"] > 0 for r in data["rows"])
    streams = [r for r in data["rows"] if r["scenario"] != "nonstream-c1"]
    assert all(r["ttft_p50"] is not None for r in streams)
    # 64 text deltas and 5 framing events at least (a converted stream may add a ping)
    assert all(r["events_per_reply"] >= 69 for r in streams)
    assert len(data["targets"]) == len(goals.CHECKS)
    assert "failover" not in data


def _row(scenario: str, target: str, **figures: Any) -> Row:
    base: dict[str, Any] = dict(
        rounds=1, requests=100, ok=100, errors=0, error_kinds={}, elapsed=1.0, rps=100.0
    )
    base.update(rps_by_round=[100.0], p50=1.0, p99=2.0, ttfb_p50=None, ttfb_p99=None)
    return Row(scenario=scenario, target=target, **{**base, **figures})


def test_targets_need_litellm_rows_and_judge_them_when_present() -> None:
    ours = [
        _row("nonstream-c1", "proxy", added_p50=1.0, cpu_per_1k=1.0, rss_peak_mb=90.0),
        _row("nonstream-c1", "proxy openai", added_p50=1.5, cpu_per_1k=1.5, rss_peak_mb=90.0),
    ]
    alone = {v.goal: v.status for v in goals.evaluate(ours)}
    assert alone[goals.added_latency(goals.Rows([])).goal] == goals.NEED_PEERS
    assert alone[goals.workers_speedup(goals.Rows([])).goal] == goals.NEED_WORKERS
    theirs = [
        _row("nonstream-c1", "litellm", added_p50=14.0, cpu_per_1k=14.0, rss_peak_mb=400.0),
        _row("nonstream-c1", "litellm openai", added_p50=5.0, cpu_per_1k=20.0, rss_peak_mb=410.0),
    ]
    verdicts = goals.Rows([*ours, *theirs])
    assert goals.added_latency(verdicts).status == "not met"  # 1.5 > 5.0 / 5
    assert goals.cpu_share(verdicts).status == "met"
    assert goals.rss_share(verdicts).status == "met"
