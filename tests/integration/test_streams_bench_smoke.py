"""`python -m bench.streams --quick` end to end: 20 streams, direct and through a proxy in
each dialect, in well under a minute.

The concurrent-streams figure is only worth reading if every piece of the harness works:
the fake's send-time stamps survive both the byte-for-byte relay and the OpenAI
conversion, the load generator parses them, and the report has every column filled. No
timing is asserted (the machine is shared); only shape and zero errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_streams_bench_reports_every_target_with_no_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # its own SQLite
    argv = [sys.executable, "-m", "bench.streams", "--quick", "--results-dir", str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = json.loads((tmp_path / "streams.json").read_text())["rows"]
    assert [row["target"] for row in rows] == ["direct", "anthropic", "openai"]
    for row in rows:
        assert row["streams"] == 20
        assert row["errors"] == 0, row["error_kinds"]
        assert row["unfinished"] == 0 and not row["plateau_partial"]
        assert row["load"]["ok"] == 20 and row["load"]["warmup_errors"] == {}
        assert row["load"]["delay"]["events"] > 0, "no stamped delta reached the client"
        assert None not in (row["delay_p50_ms"], row["delay_p99_ms"], row["delay_max_ms"])
        assert row["delay_p50_ms"] <= row["delay_p99_ms"] <= row["delay_max_ms"]
    for row in rows[1:]:
        assert isinstance(row["added_p99_ms"], float) and isinstance(row["meets"], bool)
        assert row["rss_plateau_mb"] > 0 and isinstance(row["kb_per_stream"], float)
        assert row["proxy"]["fds_plateau"]["client"] == 20, "all 20 streams open at once"
        assert row["proxy"]["fds_after"]["client"] == 0, "a client connection outlived its stream"
        assert row["cores"]["proxy"] is not None

    report = (tmp_path / "streams.md").read_text()
    assert report in done.stdout
    table = [line for line in report.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(rows)
    assert "added p99 ms" in table[0] and "KB / stream" in table[0]
