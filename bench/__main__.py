"""`python -m bench`: the proxy against the fake upstream directly, on loopback.

Starts a fake upstream, one proxy per ASGI server, and a load-generator process per run,
each in its own process; every one is stopped by PID on exit, Ctrl-C or error. With
--failover (the default) two more uvicorn proxies measure the time to first byte when the
first candidate route fails (bench/failover.py). Prints the Markdown report and writes
bench/results/latest.md and latest.json.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench import failover, report, stack
from bench.runner import RunResult, Scenario, Target, run_one
from bench.stats import Row, add_overhead, make_row

SERVERS = ("uvicorn", "daphne")
DEFAULT_SCENARIOS = ("nonstream-c1", "stream-c1", "nonstream-c64", "stream-c64")
SCENARIO_NAME = re.compile(r"^(stream|nonstream)-c(\d+)$")
# (requests per target at c=1, at c>1, time limit per run in seconds)
FULL = (500, 4000, 20.0)
ROUNDS = 4  # c>1 scenarios in the full run: servers interleaved, order flipped each round
QUICK = (100, 500, 6.0)


def scenario(name: str, quick: bool, interleave: bool) -> Scenario:
    match = SCENARIO_NAME.match(name)
    if match is None:
        raise argparse.ArgumentTypeError(f"scenario {name!r}: expected stream-cN or nonstream-cN")
    concurrency = int(match.group(2))
    if not 1 <= concurrency <= 512:
        raise argparse.ArgumentTypeError(f"scenario {name!r}: concurrency must be 1..512")
    single, many, _ = QUICK if quick else FULL
    total = single if concurrency == 1 else many
    rounds = ROUNDS if interleave and concurrency > 1 and not quick else 1
    warmup = max(10, min(3 * concurrency, total // 4))
    stream = match.group(1) == "stream"
    return Scenario(name, stream, concurrency, total // rounds, warmup, rounds)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--servers", default=",".join(SERVERS), help="uvicorn,daphne")
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help="comma-separated (stream|nonstream)-cN, N = concurrency 1..512",
    )
    parser.add_argument("--tokens", type=int, default=64, help="text deltas per fake reply")
    parser.add_argument(
        "--failover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the failover section: TTFB when the first route answers 529, resets or hangs",
    )
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown or not args.servers:
        parser.error(f"--servers: choose from {', '.join(SERVERS)}")
    try:
        names = [s for s in args.scenarios.split(",") if s]
        interleave = len(args.servers) > 1
        args.scenarios = [scenario(n, args.quick, interleave) for n in names]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    return args


def plan(
    scenarios: Sequence[Scenario], targets: Sequence[Target]
) -> list[tuple[Scenario, Target, int]]:
    """Per scenario and round: direct first, then the servers, in reverse order every
    other round (A B, B A, ...) so that drift on a shared machine hits both alike."""
    direct, servers = targets[0], list(targets[1:])
    steps = []
    for sc in scenarios:
        for round_no in range(1, sc.rounds + 1):
            order = servers if round_no % 2 else servers[::-1]
            steps += [(sc, target, round_no) for target in (direct, *order)]
    return steps


def _progress(step: int, total: int, result: RunResult) -> None:
    load = result.load
    rps = load["ok"] / load["elapsed"] if load["elapsed"] else 0.0
    print(
        f"[{step}/{total}] {result.scenario} {result.target} r{result.round}: "
        f"{rps:.0f} req/s, {load['ok']} ok, {load['errors']} errors",
        file=sys.stderr,
        flush=True,
    )


def execute(
    running: stack.Stack, scenarios: Sequence[Scenario], time_limit: float
) -> list[RunResult]:
    """Direct, each server on an Anthropic-dialect route, and the first server on an
    OpenAI-dialect route too (same fake, converted both ways)."""
    targets = [Target("direct", running.fake_port, None)]
    for i, p in enumerate(running.proxies.values()):
        targets.append(Target(p.server, p.port, p.proc.pid, server=p.server))
        if i == 0:
            name = f"{p.server} openai"
            targets.append(Target(name, p.port, p.proc.pid, model="oai-1", server=p.server))
    steps = plan(scenarios, targets)
    results = []
    for step, (sc, target, round_no) in enumerate(steps, start=1):
        proxy = running.proxies.get(target.server or "")
        if proxy is not None and proxy.proc.poll() is not None:
            raise stack.procs.ChildFailed(f"the {target.name} proxy exited {proxy.proc.returncode}")
        result = run_one(sc, target, running.fake.pid, round_no, running.workdir, time_limit)
        if proxy is not None:
            proxy.sent += sc.warmup + int(result.load["requests"])
        results.append(result)
        _progress(step, len(steps), result)
    return results


def rows_of(results: Sequence[RunResult], proxies: dict[str, stack.Proxy]) -> list[Row]:
    keys = list(dict.fromkeys((r.scenario, r.target) for r in results))
    rows = []
    for scenario_name, target in keys:
        runs = [r for r in results if (r.scenario, r.target) == (scenario_name, target)]
        proxy = proxies.get(target)
        rows.append(make_row(runs, proxy.idle_rss_kb if proxy else None))
    add_overhead(rows)
    return rows


def proxy_notes(proxies: dict[str, stack.Proxy]) -> list[str]:
    notes = []
    for proxy in proxies.values():
        proxy.log_rows = stack.count_log_rows(proxy)
        idle, after = proxy.idle_rss_kb / 1024, proxy.after_rss_kb / 1024
        rss = f"RSS idle {idle:.1f} MB, after the runs {after:.1f} MB"
        notes.append(
            f"{proxy.server}: {proxy.sent} requests sent (warm-ups included), "
            f"{proxy.log_rows} request-log rows written; {rss}."
        )
        count, lines = stack.log_problems(proxy)
        if count:
            shown = " / ".join(line.strip()[:160] for line in lines[:3])
            notes.append(
                f"{proxy.server}: {count} warning/error lines in its output, e.g. `{shown}`"
            )
    return notes


def proxy_facts(proxy: stack.Proxy) -> dict[str, Any]:
    keep = ("server", "label", "port", "idle_rss_kb", "after_rss_kb", "sent", "log_rows")
    return {"pid": proxy.proc.pid, **{name: getattr(proxy, name) for name in keep}}


def settings_line(args: argparse.Namespace) -> str:
    parts = [
        f"{sc.name}: {sc.requests * sc.rounds} requests"
        + (f" in {sc.rounds} interleaved rounds" if sc.rounds > 1 else "")
        + f" after {sc.warmup} warm-up"
        for sc in args.scenarios
    ]
    mode = "quick" if args.quick else "full"
    return (
        f"{mode} run; fake upstream replies with {args.tokens} text deltas; "
        + "; ".join(parts)
        + "."
    )


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind through every finally, which stops the children


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    time_limit = (QUICK if args.quick else FULL)[2]
    started = time.monotonic()
    outcome: failover.Outcome | None = None
    fo_results: list[tuple[failover.Case, RunResult]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        with stack.running_stack(workdir, args.servers, args.tokens, args.failover) as running:
            results = execute(running, args.scenarios, time_limit)
            if args.failover:
                fo_results = failover.execute(running, args.quick)
        rows = rows_of(results, running.proxies)
        notes = proxy_notes(running.proxies)
        if args.failover:
            outcome = failover.finish(running, fo_results)
    notes.append(f"Whole bench: {time.monotonic() - started:.0f} s wall time.")
    meta: dict[str, Any] = {"machine": report.machine(), "settings_line": settings_line(args)}
    everyone = {**running.proxies, **running.failover}
    meta["proxies"] = {name: proxy_facts(p) for name, p in everyone.items()}
    sections = [failover.render(outcome.rows, outcome.notes)] if outcome else []
    text = report.render(meta, rows, notes, sections)
    print(text)
    extra = {"failover": failover.as_json(outcome)} if outcome else None
    where = report.write(meta, rows, results, text, extra)
    print(f"wrote {where / 'latest.md'} and {where / 'latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process the bench started has been stopped", file=sys.stderr)
        sys.exit(130)
