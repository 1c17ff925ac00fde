"""One measured run: a load-generator process against one target, with the target's
CPU and memory read from /proc around the measured phase (warm-up excluded)."""

from __future__ import annotations

import json
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench import procs
from bench.stack import API_KEY

SETTLE = 0.5  # after the last response: the proxy's request-log batch lands in its CPU count


@dataclass(frozen=True)
class Scenario:
    name: str  # "stream-c64"
    stream: bool
    concurrency: int
    requests: int  # per round
    warmup: int
    rounds: int = 1
    upstream: str = "fast"  # which fake answers: "fast" (at once) or "slow" (paced)
    body_file: str | None = None  # a recorded request body instead of the tiny one
    time_limit: float = 20.0  # seconds for one round's measured phase
    warmup_limit: float | None = None  # seconds for one round's warm-up; None: time_limit
    stagger: float = 0.0  # seconds over which the connections' first requests start


@dataclass(frozen=True)
class Target:
    name: str  # "direct", "proxy", "proxy openai", "litellm", ...
    port: int
    pid: int | None  # the root of the measured process tree; None for the fake itself
    model: str = "bench-1"  # the route asked for: bench* Anthropic-dialect, oai* OpenAI
    server: str | None = None  # the service (stack.Stack.services key) serving this target
    warmup_model: str | None = None  # the route the warm-up asks for, when not `model`


@dataclass(frozen=True)
class Reading:
    """CPU counters at one instant: the proxy tree, the fake, and the whole machine."""

    at: float
    proxy: float | None
    fake: float
    machine: float

    @staticmethod
    def take(pids: list[int], fake_pid: int) -> Reading:
        proxy = procs.cpu_seconds(pids) if pids else None
        fake = procs.cpu_seconds([fake_pid])
        return Reading(time.monotonic(), proxy, fake, procs.machine_busy_seconds())


@dataclass
class RunResult:
    scenario: str
    target: str
    round: int
    load: dict[str, Any]  # the load generator's JSON: counts, elapsed, samples
    window: float = 0.0  # wall seconds from "go" to the load generator's result
    target_cpu: float | None = None  # the proxy's CPU seconds: the window plus SETTLE
    target_cpu_window: float | None = None  # the proxy's CPU seconds in the window alone
    fake_cpu: float = 0.0
    machine_cpu: float = 0.0  # busy CPU seconds of the whole machine in the window
    rss_peak_kb: int | None = None


def _read_line(stream: IO[str], proc: subprocess.Popen[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise procs.ChildFailed(f"load generator silent for {timeout:g}s")
    line = stream.readline()
    if not line:
        raise procs.ChildFailed(f"load generator exited {proc.wait(timeout=5)}")
    return line.strip()


def load_argv(scenario: Scenario, target: Target, time_limit: float) -> list[str]:
    argv = [procs.PYTHON, "-m", "bench.load", "--port", str(target.port), "--api-key", API_KEY]
    argv += ["--concurrency", str(scenario.concurrency), "--requests", str(scenario.requests)]
    argv += ["--warmup", str(scenario.warmup), "--time-limit", str(time_limit)]
    argv += ["--model", target.model]
    if scenario.warmup_limit is not None:
        argv += ["--warmup-time-limit", str(scenario.warmup_limit)]
    if scenario.body_file is not None:
        argv += ["--body-file", scenario.body_file]
    if target.warmup_model is not None:
        argv += ["--warmup-model", target.warmup_model]
    if scenario.stagger:
        argv += ["--stagger", str(scenario.stagger)]
    return [*argv, "--stream"] if scenario.stream else argv


def _await_ready(proc: subprocess.Popen[str], time_limit: float) -> None:
    assert proc.stdout is not None
    line = _read_line(proc.stdout, proc, time_limit + 30)
    if line != "ready":
        raise procs.ChildFailed(f"load generator said {line[:200]!r}, not 'ready'")


def _measure(
    proc: subprocess.Popen[str],
    result: RunResult,
    target: Target,
    fake_pid: int,
    limit: float,
    settle: float = SETTLE,
) -> None:
    """Warm-up done: read the counters, let the measured phase go, read them again."""
    assert proc.stdin is not None and proc.stdout is not None
    _await_ready(proc, limit)
    pids = procs.process_tree(target.pid) if target.pid else []
    before = Reading.take(pids, fake_pid)
    with procs.RssSampler(pids) as sampler:
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result.load = json.loads(_read_line(proc.stdout, proc, limit + 30))
        done = Reading.take(pids, fake_pid)
        time.sleep(settle)
    result.window = done.at - before.at
    result.fake_cpu = done.fake - before.fake
    result.machine_cpu = done.machine - before.machine
    if pids and before.proxy is not None and done.proxy is not None:
        result.target_cpu_window = done.proxy - before.proxy
        result.target_cpu = procs.cpu_seconds(pids) - before.proxy  # settle included
        result.rss_peak_kb = sampler.peak_kb


def run_one(
    scenario: Scenario,
    target: Target,
    fake_pid: int,
    round_no: int,
    workdir: Path,
    time_limit: float,
    settle: float = SETTLE,
) -> RunResult:
    """Warm up, then measure; the load generator is stopped by PID whatever happens.
    `settle`: seconds after the measured phase counted into target_cpu (0: no wait)."""
    log_path = workdir / "load.log"
    proc = procs.spawn_talking(load_argv(scenario, target, time_limit), log_path)
    result = RunResult(scenario.name, target.name, round_no, {})
    finished = False
    try:
        _measure(proc, result, target, fake_pid, time_limit, settle)
        finished = True
    finally:
        procs.stop(proc, patience=2.0 if finished else 0.0)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    return result
