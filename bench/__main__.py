"""`python -m bench`: the proxy side by side with direct requests to a fake upstream, and
with `--peers` with nginx and LiteLLM on the same fake, in one interleaved run on loopback.

Starts two fake upstreams (one answering at once, one paced like a real model), the proxy
(`manage.py serve`; one per ASGI server in --servers, one more with `serve --workers N`
for --workers-target), the peers, and a load-generator process per run; every one is
stopped by PID on exit, Ctrl-C or error. With --failover (the default) two more uvicorn
proxies measure the time to first byte when the first candidate route fails
(bench/failover.py). Prints the Markdown report and writes latest.md and latest.json
(bench/results/ unless --results-dir says otherwise).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench import failover, goals, report, scenarios, stack, targets
from bench.runner import RunResult, Scenario, run_one
from bench.stats import Row, add_overhead, make_row

SERVERS = ("uvicorn", "daphne")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small counts: a short run")
    size.add_argument("--tiny", action="store_true", help="a few requests each: a smoke run")
    parser.add_argument("--servers", default="uvicorn", help="ASGI servers: uvicorn,daphne")
    parser.add_argument(
        "--scenarios",
        default=",".join(scenarios.DEFAULT),
        help=f"comma-separated KIND-cN, KIND one of {', '.join(scenarios.KINDS)}, "
        f"N = concurrency 1..{scenarios.MAX_CONCURRENCY}",
    )
    parser.add_argument(
        "--tokens", type=int, default=stack.TOKENS, help="text deltas per fake reply"
    )
    parser.add_argument(
        "--failover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the failover section: TTFB when the first route answers 529, resets or hangs",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also nginx and LiteLLM (installed on demand under .bench-peers/ and by apt)",
    )
    parser.add_argument(
        "--workers-target",
        type=int,
        metavar="N",
        default=None,
        help="one more proxy, `serve --workers N`, in the c>=128 and paced scenarios "
        "(default 2, so the two-worker target is judged in every run; 0: none; --tiny: none)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=report.RESULTS_DIR,
        help="where latest.md and latest.json go (default bench/results)",
    )
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = set(args.servers) - set(SERVERS)
    if unknown or not args.servers:
        parser.error(f"--servers: choose from {', '.join(SERVERS)}")
    if args.workers_target is None:
        args.workers_target = None if args.tiny else 2
    elif args.workers_target < 0:
        parser.error("--workers-target: N must be 0 (none) or more")
    elif args.workers_target == 0:
        args.workers_target = None
    args.size = scenarios.TINY if args.tiny else scenarios.QUICK if args.quick else scenarios.FULL
    try:
        names = list(dict.fromkeys(s for s in args.scenarios.split(",") if s))
        args.scenarios = [scenarios.scenario(name, args.size) for name in names]
    except ValueError as exc:
        parser.error(str(exc))
    if not args.scenarios:
        parser.error("--scenarios: name at least one")
    return args


def _progress(step: int, total: int, result: RunResult) -> None:
    load = result.load
    rps = load["ok"] / load["elapsed"] if load["elapsed"] else 0.0
    print(
        f"[{step}/{total}] {result.scenario} {result.target} r{result.round}: "
        f"{rps:.0f} req/s, {load['ok']} ok, {load['errors']} errors",
        file=sys.stderr,
        flush=True,
    )


def execute(running: stack.Stack, chosen: Sequence[Scenario]) -> list[RunResult]:
    """Every (scenario, target, round) in plan order: see targets.plan."""
    steps = targets.plan(chosen, running)
    results = []
    for step, (sc, target, round_no) in enumerate(steps, start=1):
        service = running.services.get(target.server or "")
        if service is not None and service.proc.poll() is not None:
            code = service.proc.returncode
            raise stack.procs.ChildFailed(f"{service.name} exited {code}")
        fake_pid = running.fake_for(sc.upstream).pid
        result = run_one(sc, target, fake_pid, round_no, running.workdir, sc.time_limit)
        if service is not None:
            service.sent += sc.warmup + int(result.load["requests"])
        results.append(result)
        _progress(step, len(steps), result)
    return results


def rows_of(results: Sequence[RunResult], services: dict[str, stack.Service]) -> list[Row]:
    keys = list(dict.fromkeys((r.scenario, r.target) for r in results))
    rows = []
    for scenario_name, target in keys:
        runs = [r for r in results if (r.scenario, r.target) == (scenario_name, target)]
        service = services.get(target)
        rows.append(make_row(runs, service.idle_rss_kb if service else None))
    add_overhead(rows)
    return rows


def service_notes(services: dict[str, stack.Service]) -> list[str]:
    notes = []
    for service in services.values():
        idle, after = service.idle_rss_kb / 1024, service.after_rss_kb / 1024
        text = (
            f"{service.name} ({service.about}): {service.sent} requests sent (warm-ups "
            f"included); RSS idle {idle:.1f} MB, after the runs {after:.1f} MB"
        )
        if isinstance(service, stack.Proxy):
            service.log_rows = stack.count_log_rows(service)
            text += f"; {service.log_rows} request-log rows written"
        notes.append(text + ".")
        count, lines = stack.log_problems(service)
        if count:
            shown = " / ".join(line.strip()[:160] for line in lines[:2])
            notes.append(
                f"{service.name}: {count} warning/error lines in its output, e.g. `{shown}`"
            )
    return notes


def service_facts(service: stack.Service) -> dict[str, Any]:
    keep = ("name", "role", "about", "ports", "idle_rss_kb", "after_rss_kb", "sent")
    facts = {"pid": service.proc.pid, **{name: getattr(service, name) for name in keep}}
    if isinstance(service, stack.Proxy):
        facts.update(server=service.server, workers=service.workers, label=service.label)
        facts["log_rows"] = service.log_rows
    return facts


def settings_line(args: argparse.Namespace) -> str:
    parts = [
        f"{sc.name}: {sc.requests * sc.rounds} requests"
        + (f" in {sc.rounds} interleaved rounds" if sc.rounds > 1 else "")
        + f" after {sc.warmup} warm-up"
        + (" each" if sc.rounds > 1 else "")
        for sc in args.scenarios
    ]
    pacing = f"{stack.SLOW_TTFT * 1000:.0f} ms to the first token, "
    pacing += f"{stack.SLOW_PER_TOKEN * 1000:.0f} ms per token"
    return (
        f"{args.size.label} run; the fakes reply with {args.tokens} text deltas, at once "
        f"(realistic and burst: {pacing}; realistic's clients start spread over "
        f"{scenarios.STAGGER:.3g} s, burst's at once); per target, at most "
        f"{args.size.time_limit:g} s of measured "
        "requests per scenario (a target too slow for the count gets fewer); "
        + "; ".join(parts)
        + "."
    )


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind through every finally, which stops the children


def _peer_starter(args: argparse.Namespace) -> stack.PeerStarter | None:
    if not args.peers:
        return None
    from bench.peers import start

    try:
        start.ensure_installed()  # before any process starts: a failed install leaves nothing
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        raise SystemExit(f"could not install the peers (nginx-light, LiteLLM): {exc}") from exc
    return start.start


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    started = time.monotonic()
    plan = stack.Plan(
        servers=args.servers,
        tokens=args.tokens,
        failover=args.failover,
        workers=args.workers_target,
        peers=_peer_starter(args),
    )
    outcome: failover.Outcome | None = None
    fo_results: list[tuple[failover.Case, RunResult]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        with stack.running_stack(Path(tmp), plan) as running:
            results = execute(running, args.scenarios)
            if args.failover:
                fo_results = failover.execute(running, args.quick or args.tiny)
        rows = rows_of(results, running.services)
        notes = [*running.notes, *service_notes(running.services)]
        if args.failover:
            outcome = failover.finish(running, fo_results)
    notes.append(f"Whole bench: {time.monotonic() - started:.0f} s wall time.")
    meta: dict[str, Any] = {"machine": report.machine(), "settings_line": settings_line(args)}
    meta["servers"] = [p.name for p in running.proxies.values() if p.workers is None]
    everyone = {**running.services, **running.failover}
    meta["services"] = {name: service_facts(s) for name, s in everyone.items()}
    verdicts = goals.evaluate(rows)
    sections = [goals.render(verdicts)]
    if outcome:
        sections.append(failover.render(outcome.rows, outcome.notes))
    text = report.render(meta, rows, notes, sections)
    print(text)
    extra: dict[str, Any] = {"targets": goals.as_json(verdicts)}
    if outcome:
        extra["failover"] = failover.as_json(outcome)
    where = report.write(meta, rows, results, text, extra, args.results_dir)
    print(f"wrote {where / 'latest.md'} and {where / 'latest.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process the bench started has been stopped", file=sys.stderr)
        sys.exit(130)
