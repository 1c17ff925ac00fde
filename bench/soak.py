"""`python -m bench.soak` (`make soak`): many concurrent streams for minutes against fake
providers that fail a share of requests in every way they know, then the books balanced.

One proxy process (`manage.py serve`, SQLite) routes `soak-*` to two providers on two
fakes (an Anthropic- and an OpenAI-dialect one, so both relays run), each failing
`--faults` of its requests at random (bench/soak_upstream.py). The load generator
(bench/load.py) keeps `--streams` streaming requests in flight, back to back on
keep-alive connections, for `--duration` seconds. Every `--sample` seconds the proxy's
RSS, open file descriptors and TCP connections are read from /proc.

Afterwards: requests sent vs request-log rows written (must be equal: the proxy is
stopped with SIGTERM, which drains the log), answers by kind, faults injected by kind,
and RSS / fds / connections at the start, the middle and the end (flat: nothing leaks).
Prints a Markdown report and writes bench/results/soak.md and soak.json. Bounded and
loopback only.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from bench.report import RESULTS_DIR
from bench.stack import API_KEY, prepare_data

CONFIG = """\
providers:
  anthropic_fake:
    type: anthropic
    endpoint: http://127.0.0.1:{anthropic_port}
    apiKey: sk-fake
  openai_fake:
    type: openai
    endpoint: http://127.0.0.1:{openai_port}
    apiKey: sk-fake
models:
  - {{name: soak-a, provider: anthropic_fake, alias: "soak-*", weight: 2}}
  - {{name: soak-b, provider: openai_fake, alias: "soak-*", weight: 1}}
routing:
  firstTokenTimeout: 2s
  idleTimeout: 3s
  circuit: {{failureThreshold: 1000000, minRequests: 1000000}}
retry: {{maxRetries: 1, initialDelay: 50ms, maxDelay: 200ms}}
apiKeys: ["{key}"]
"""
# The circuit breaker is off in effect: with it, a few faults in a row would open a
# circuit and spare the proxy the very failovers the soak is there to exercise.


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss_mb: float
    fds: int
    clients: int  # TCP connections from clients (to the proxy's port)
    upstream: int  # TCP connections to the providers (in use, or idle in the pool)


@dataclass
class Outcome:
    streams: int
    duration: float
    faults_rate: float
    requests: int = 0
    ok: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    rows: int | None = None
    injected: dict[str, dict[str, int]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    idle: Sample | None = None  # after the load, before the shutdown
    proxy_cpu_seconds: float = 0.0
    exit_code: int | None = None


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def tcp_connections(pid: int, port: int) -> tuple[int, int]:
    """(client, upstream) established TCP connections of a process: those on its own
    listening port, and the others (to the providers). From /proc/<pid>/net/tcp*."""
    mine = socket_inodes(pid)
    clients = upstream = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "01" or inode not in mine:  # 01: ESTABLISHED
                continue
            if int(local.rsplit(":", 1)[1], 16) == port:
                clients += 1
            else:
                upstream += 1
    return clients, upstream


def sample(pid: int, port: int, started: float) -> Sample:
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    rss = procs.rss_kb([pid]) / 1024
    clients, upstream = tcp_connections(pid, port)
    return Sample(round(time.monotonic() - started, 1), round(rss, 1), fds, clients, upstream)


class Sampler(threading.Thread):
    def __init__(self, pid: int, port: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.port, self.every = pid, port, every
        self.started = time.monotonic()
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every if self.samples else 0):
            try:
                self.samples.append(sample(self.pid, self.port, self.started))
            except OSError:
                return


def load_argv(port: int, args: argparse.Namespace) -> list[str]:
    return [
        procs.PYTHON,
        "-m",
        "bench.load",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--model",
        "soak-1",
        "--stream",
        "--concurrency",
        str(args.streams),
        "--requests",
        str(10**9),
        "--warmup",
        "0",  # every request is measured, so the log's rows are all accounted for
        "--time-limit",
        str(args.duration),
    ]


def run_load(port: int, args: argparse.Namespace, proxy_pid: int, log: Path) -> tuple[Any, Sampler]:
    """The soak with the sampler on; returns the load generator's JSON and the sampler."""
    load = procs.spawn_talking(load_argv(port, args), log)
    assert load.stdin is not None and load.stdout is not None
    try:
        if load.stdout.readline().strip() != "ready":
            raise procs.ChildFailed("the load generator did not get ready")
        sampler = Sampler(proxy_pid, port, args.sample)
        sampler.start()
        load.stdin.write("go\n")
        load.stdin.flush()
        result = json.loads(load.stdout.readline())
        sampler.done.set()
        sampler.join()
        return result, sampler
    finally:
        procs.stop(load, patience=5.0)


def count_rows(data_dir: Path) -> int:
    path = data_dir / "proxy.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT COUNT(*) FROM gateway_requestlog").fetchone()[0])


def injected(log: Path) -> dict[str, int]:
    """The fault counts a soak fake printed as it stopped (its last line)."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{"):
            return {str(k): int(v) for k, v in ast.literal_eval(line).items()}
    return {}


def soak(args: argparse.Namespace, workdir: Path) -> Outcome:
    outcome = Outcome(args.streams, args.duration, args.faults)
    fakes: dict[str, tuple[int, subprocess.Popen[bytes], Path]] = {}
    proxy: subprocess.Popen[bytes] | None = None
    try:
        for name, seed in (("anthropic", 7), ("openai", 8)):
            port, log = procs.free_port(), workdir / f"fake-{name}.log"
            argv = [procs.PYTHON, "-m", "bench.soak_upstream", "--port", str(port)]
            argv += ["--faults", str(args.faults), "--seed", str(seed)]
            argv += ["--tokens", str(args.tokens), "--per-token", str(args.per_token)]
            fake = procs.spawn(argv, log)
            procs.wait_http_ok(f"http://127.0.0.1:{port}/v1/models", fake, log)
            fakes[name] = (port, fake, log)
        config = CONFIG.format(
            anthropic_port=fakes["anthropic"][0], openai_port=fakes["openai"][0], key=API_KEY
        )
        data_dir = prepare_data(workdir, {"soak": config})["soak"]
        port, log = procs.free_port(), workdir / "proxy.log"
        argv = [procs.PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
        env = {"DATA_DIR": str(data_dir), "DRAIN_SECONDS": "0", "LOG_LEVEL": "WARNING"}
        proxy = procs.spawn(argv, log, env)
        procs.wait_http_ok(f"http://127.0.0.1:{port}/health", proxy, log, timeout=60)
        cpu_before = procs.cpu_seconds([proxy.pid])
        result, sampler = run_load(port, args, proxy.pid, workdir / "load.log")
        outcome.proxy_cpu_seconds = round(procs.cpu_seconds([proxy.pid]) - cpu_before, 1)
        time.sleep(args.settle)
        outcome.idle = sample(proxy.pid, port, sampler.started)
        outcome.samples = sampler.samples
        outcome.requests = int(result["requests"])
        outcome.ok = int(result["ok"])
        outcome.answers = {"ok": outcome.ok, **result["error_kinds"]}
        proxy.send_signal(signal.SIGTERM)  # drains the request log, then exits
        outcome.exit_code = proxy.wait(timeout=120)
        outcome.rows = count_rows(data_dir)
    finally:
        if proxy is not None:
            procs.stop(proxy)
        for name, (_, fake, log) in fakes.items():
            procs.stop(fake, patience=0.0)
            outcome.injected[name] = injected(log)
    return outcome


def _row(label: str, s: Sample | None) -> str:
    if s is None:
        return f"| {label} | - | - | - | - | - |"
    return f"| {label} | {s.at:.0f} | {s.rss_mb:.1f} | {s.fds} | {s.clients} | {s.upstream} |"


def render(outcome: Outcome) -> str:
    samples = outcome.samples
    middle = samples[len(samples) // 2] if samples else None
    lines = [
        f"Soak: {outcome.streams} streams at once for {outcome.duration:.0f} s, "
        f"{outcome.faults_rate:.0%} of upstream requests failed at random.",
        "",
        f"- requests sent: {outcome.requests:,}; request-log rows: {outcome.rows:,}"
        + (" (equal)" if outcome.rows == outcome.requests else " (NOT equal)"),
        f"- answers: {json.dumps(outcome.answers)}",
        f"- faults injected: {json.dumps(outcome.injected)}",
        f"- proxy CPU: {outcome.proxy_cpu_seconds} s; exit code after SIGTERM: {outcome.exit_code}",
        "",
        "| when | s | RSS MB | fds | client connections | upstream connections |",
        "|---|--:|--:|--:|--:|--:|",
        _row("start", samples[0] if samples else None),
        _row("middle", middle),
        _row("end of load", samples[-1] if samples else None),
        _row("idle after", outcome.idle),
        "",
        "Upstream connections left after the load are idle keep-alive connections in the "
        "pool, closed within one to two 30 s keep-alive periods; client connections must be 0.",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--faults", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=32, help="text deltas per reply")
    parser.add_argument("--per-token", type=float, default=0.2, help="seconds between them")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--settle",
        type=float,
        default=45.0,
        help="idle seconds at the end (past the 30 s keep-alive of pooled upstream connections)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        outcome = soak(args, Path(tmp))
    text = render(outcome)
    print(text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "soak.md").write_text(text + "\n")
    (args.results_dir / "soak.json").write_text(json.dumps(asdict(outcome), indent=1) + "\n")
    return 0 if outcome.rows == outcome.requests else 1


if __name__ == "__main__":
    sys.exit(main())
