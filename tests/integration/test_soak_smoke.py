"""`make soak` end to end on a tiny setting: it runs, balances its books and reports.
No timing assertions; the figures come from the full soak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_tiny_soak_balances_requests_and_log_rows(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "bench.soak", "--streams", "12", "--duration", "4"]
    argv += ["--faults", "0.3", "--tokens", "6", "--per-token", "0.02", "--sample", "1"]
    argv += ["--settle", "1", "--results-dir", str(tmp_path)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads((tmp_path / "soak.json").read_text())
    assert outcome["requests"] > 12 and outcome["rows"] == outcome["requests"]
    injected = outcome["injected"]["anthropic"]
    assert injected["healthy"] > 0 and len(injected) > 2  # faults of several kinds
    assert sum(outcome["answers"].values()) == outcome["requests"]
    assert outcome["samples"] and outcome["idle"]["fds"] > 0
    assert outcome["idle"]["clients"] == 0  # every client connection was closed
    assert "request-log rows" in (tmp_path / "soak.md").read_text()
