"""The processes under test: two fake upstreams (one answering at once, one paced like a
real model), the proxy (one per ASGI server, and optionally one more with several
workers), the peers when asked for, and (for the failover figures) two more uvicorn
proxies with failover routes of their own. Every one is stopped by PID on exit."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.service import FAST, SLOW, Service

API_KEY = "sk-bench-client-key-0123456789"
# Models: bench* and real-* Anthropic-dialect, oai* and realoai-* OpenAI-dialect (the same
# fakes, converted both ways); bench*/oai* on the fast fake, real-*/realoai-* the paced one.
CONFIG_TEMPLATE = """\
providers:
  fake:
    type: anthropic
    endpoint: http://127.0.0.1:{port}
    apiKey: sk-fake
  fake_openai:
    type: openai
    endpoint: http://127.0.0.1:{port}
    apiKey: sk-fake
  paced:
    type: anthropic
    endpoint: http://127.0.0.1:{slow_port}
    apiKey: sk-fake
  paced_openai:
    type: openai
    endpoint: http://127.0.0.1:{slow_port}
    apiKey: sk-fake
models:
  - name: claude-bench
    provider: fake
    alias: "bench*"
  - name: gpt-bench
    provider: fake_openai
    alias: "oai*"
  - name: claude-real
    provider: paced
    alias: "real-*"
  - name: gpt-real
    provider: paced_openai
    alias: "realoai-*"
apiKeys: ["{key}"]
"""
# The failover proxies: for each fault F the faulty upstream model (provider `bad`, the same
# fake, which fails models named fault-*) comes first by weight, the healthy route second.
# `fo-hedge*` is the hang again, with hedging. `bench*` is the healthy baseline.
FAILOVER_TEMPLATE = """\
providers:
  fake:
    type: anthropic
    endpoint: http://127.0.0.1:{port}
    apiKey: sk-fake
  bad:
    type: anthropic
    endpoint: http://127.0.0.1:{port}
    apiKey: sk-fake
models:
  - {{name: claude-bench, provider: fake, alias: "bench*"}}
  - {{name: fault-529, provider: bad, alias: "fo-529*", weight: 9}}
  - {{name: claude-bench, provider: fake, alias: "fo-529*", weight: 1}}
  - {{name: fault-reset, provider: bad, alias: "fo-reset*", weight: 9}}
  - {{name: claude-bench, provider: fake, alias: "fo-reset*", weight: 1}}
  - {{name: fault-hang, provider: bad, alias: "fo-hang*", weight: 9}}
  - {{name: claude-bench, provider: fake, alias: "fo-hang*", weight: 1}}
  - {{name: fault-hang, provider: bad, alias: "fo-hedge*", weight: 9, hedgeAfter: {hedge}}}
  - {{name: claude-bench, provider: fake, alias: "fo-hedge*", weight: 1}}
routing:
  firstTokenTimeout: {first_token}
{circuit}apiKeys: ["{key}"]
"""
FIRST_TOKEN_TIMEOUT = "2s"  # an unhedged hang fails over after this, by construction
HEDGE_AFTER = "200ms"
# Circuit breaker off in effect, so that every request pays the failover it measures.
NO_CIRCUIT = "  circuit: {failureThreshold: 1000000, minRequests: 1000000}\n"
# label -> circuit block: "failover" measures failover itself, "circuit" the same routes
# behind the default circuit breaker (its settings are global, hence a proxy of its own).
FAILOVER_PROXIES = {"failover": NO_CIRCUIT, "circuit": ""}
FAULTY_PROVIDER = "bad"
IDLE_SETTLE = 1.0  # seconds between /health answering and the idle RSS reading
# The paced fake of the realistic scenario: seconds to the first token, then per token.
SLOW_TTFT = 0.3
TOKENS = 64  # text deltas per fake reply, unless --tokens says otherwise
SLOW_PER_TOKEN = 0.005


@dataclass(kw_only=True)
class Proxy(Service):
    server: str
    data_dir: Path
    workers: int | None = None  # `serve --workers N`; None: the option not given
    log_rows: int | None = None  # RequestLog rows written by the end
    label: str = ""  # the failover proxies' name ("failover", "circuit"); "" for the others


# Starts the peers: (workdir, exit stack, {FAST/SLOW: fake port}) -> their services.
PeerStarter = Callable[[Path, contextlib.ExitStack, dict[str, int]], list[Service]]


@dataclass(frozen=True)
class Plan:
    """What to start."""

    servers: Sequence[str]  # one proxy per ASGI server
    tokens: int  # text deltas per fake reply
    failover: bool = False  # the two failover proxies
    workers: int | None = None  # one more uvicorn proxy with `serve --workers N`
    peers: PeerStarter | None = None


@dataclass
class Stack:
    fake_port: int  # the fast fake (the failover section uses it alone)
    fake: subprocess.Popen[bytes]
    slow_port: int
    slow_fake: subprocess.Popen[bytes]
    workdir: Path
    services: dict[str, Service] = field(default_factory=dict)  # by name, in start order
    failover: dict[str, Proxy] = field(default_factory=dict)  # by label, all uvicorn
    notes: list[str] = field(default_factory=list)  # what could not start, and why

    @property
    def proxies(self) -> dict[str, Proxy]:
        return {n: s for n, s in self.services.items() if isinstance(s, Proxy)}

    def fake_for(self, upstream: str) -> subprocess.Popen[bytes]:
        return self.slow_fake if upstream == SLOW else self.fake

    @property
    def fake_ports(self) -> dict[str, int]:
        return {FAST: self.fake_port, SLOW: self.slow_port}


def proxy_name(server: str, workers: int | None = None) -> str:
    """The target name: "proxy" for the default server, "proxy daphne", "proxy 2 workers"."""
    name = "proxy" if server == "uvicorn" else f"proxy {server}"
    return f"{name} {workers} workers" if workers else name


def start_fake(
    workdir: Path,
    stack: contextlib.ExitStack,
    tokens: int,
    pacing: tuple[float, float] | None = None,
) -> tuple[int, subprocess.Popen[bytes]]:
    """A fake upstream; `pacing` = (seconds to the first token, seconds per later token)."""
    port = procs.free_port()
    name = "paced" if pacing else "fast"
    log_path = workdir / f"fake_upstream_{name}.log"
    argv = [procs.PYTHON, "-m", "bench.upstream_proc", "--port", str(port), "--tokens", str(tokens)]
    if pacing:
        argv += ["--ttft", str(pacing[0]), "--per-token", str(pacing[1])]
    fake = stack.enter_context(procs.running(argv, log_path))
    procs.wait_http_ok(f"http://127.0.0.1:{port}/v1/models", fake, log_path)
    return port, fake


def failover_config(fake_port: int, circuit: str) -> str:
    return FAILOVER_TEMPLATE.format(
        port=fake_port,
        key=API_KEY,
        hedge=HEDGE_AFTER,
        first_token=FIRST_TOKEN_TIMEOUT,
        circuit=circuit,
    )


def prepare_data(workdir: Path, configs: dict[str, str]) -> dict[str, Path]:
    """Migrate a fresh SQLite database once, then one copy per configuration with it
    imported: {name: config text} -> {name: data-dir template}."""
    migrated = workdir / "data-migrated"
    migrated.mkdir()
    log_path = workdir / "setup.log"
    manage = [procs.PYTHON, "manage.py"]
    procs.run_checked([*manage, "migrate", "--noinput"], log_path, {"DATA_DIR": str(migrated)})
    templates = {}
    for name, text in configs.items():
        template = workdir / f"data-template-{name}"
        shutil.copytree(migrated, template)
        config = workdir / f"{name}.config.yaml"
        config.write_text(text)
        env = {"DATA_DIR": str(template)}
        procs.run_checked([*manage, "import_config", str(config)], log_path, env)
        templates[name] = template
    return templates


def start_proxy(
    workdir: Path,
    template: Path,
    server: str,
    stack: contextlib.ExitStack,
    label: str = "",
    workers: int | None = None,
    main: bool = True,
) -> Proxy:
    """One `manage.py serve`; `main` = the proxy of the default lineup, not a variant."""
    name = label or proxy_name(server, workers)
    slug = name.replace(" ", "-")
    data_dir = workdir / f"data-{slug}"
    shutil.copytree(template, data_dir)
    port = procs.free_port()
    log_path = workdir / f"proxy-{slug}.log"
    argv = [procs.PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--server", server]
    if workers is not None:
        argv += ["--workers", str(workers)]
    proc = stack.enter_context(procs.running(argv, log_path, {"DATA_DIR": str(data_dir)}))
    procs.wait_http_ok(f"http://127.0.0.1:{port}/health", proc, log_path)
    processes = f"{workers} workers" if workers else "1 process"
    if label:
        role = "failover"
    elif workers:
        role = "proxy-workers"
    else:
        role = "proxy" if main else "proxy-server"
    return Proxy(
        name=name,
        role=role,
        proc=proc,
        ports={FAST: port, SLOW: port},
        log_path=log_path,
        about=f"`manage.py serve --server {server}`, {processes}",
        server=server,
        data_dir=data_dir,
        workers=workers,
        label=label,
    )


def _start_workers_proxy(
    workdir: Path, template: Path, workers: int, stack: Stack, exits: contextlib.ExitStack
) -> None:
    """The extra `serve --workers N` proxy; a `serve` without that option is noted, not
    fatal, so that the rest of the bench still runs."""
    try:
        proxy = start_proxy(workdir, template, "uvicorn", exits, workers=workers)
    except procs.ChildFailed as exc:
        text = f"`serve --workers {workers}` did not start, so no workers row: {exc}"
        print(text, file=sys.stderr, flush=True)
        stack.notes.append(text.splitlines()[0])
        return
    stack.services[proxy.name] = proxy


def _read_rss(services: Sequence[Service], attribute: str) -> None:
    for service in services:
        setattr(service, attribute, procs.rss_kb(procs.process_tree(service.proc.pid)))


@contextlib.contextmanager
def running_stack(workdir: Path, plan: Plan) -> Iterator[Stack]:
    """Everything up and idle; on exit every process is stopped, whatever happened."""
    with contextlib.ExitStack() as exits:
        fake_port, fake = start_fake(workdir, exits, plan.tokens)
        pacing = (SLOW_TTFT, SLOW_PER_TOKEN)
        slow_port, slow_fake = start_fake(workdir, exits, plan.tokens, pacing)
        config = CONFIG_TEMPLATE.format(port=fake_port, slow_port=slow_port, key=API_KEY)
        configs = {"bench": config}
        if plan.failover:
            for label, circuit in FAILOVER_PROXIES.items():
                configs[label] = failover_config(fake_port, circuit)
        templates = prepare_data(workdir, configs)
        stack = Stack(fake_port, fake, slow_port, slow_fake, workdir)
        for i, server in enumerate(plan.servers):
            proxy = start_proxy(workdir, templates["bench"], server, exits, main=i == 0)
            stack.services[proxy.name] = proxy
        if plan.workers:
            _start_workers_proxy(workdir, templates["bench"], plan.workers, stack, exits)
        if plan.peers is not None:
            for peer in plan.peers(workdir, exits, stack.fake_ports):
                stack.services[peer.name] = peer
        if plan.failover:
            for label in FAILOVER_PROXIES:
                proxy = start_proxy(workdir, templates[label], "uvicorn", exits, label)
                stack.failover[label] = proxy
        time.sleep(IDLE_SETTLE)
        everyone = [*stack.services.values(), *stack.failover.values()]
        _read_rss(everyone, "idle_rss_kb")
        yield stack
        _read_rss(everyone, "after_rss_kb")


def count_log_rows(proxy: Proxy) -> int | None:
    """RequestLog rows in the proxy's database, read after the proxy has stopped."""
    path = proxy.data_dir / "proxy.sqlite3"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM gateway_requestlog").fetchone()[0])
    except sqlite3.Error:
        return None


def log_problems(service: Service, limit: int = 8) -> tuple[int, list[str]]:
    """How many lines of a service's output look like trouble, and the first few."""
    words = ("ERROR", "Traceback", "WARNING", "Exception", "CRITICAL")
    lines = procs.log_tail(service.log_path, lines=100_000).splitlines()
    bad = [line for line in lines if any(word in line for word in words)]
    return len(bad), bad[:limit]


@dataclass
class LogTally:
    """One requested model's rows in a proxy's request log."""

    requests: int = 0
    ok: int = 0
    tried_faulty: int = 0  # requests with an attempt on the faulty provider
    ends: dict[str, int] = field(default_factory=dict)  # "outcome error_kind" -> attempts


def faulty_attempts(proxy: Proxy) -> dict[str, LogTally]:
    """Per requested model, from the proxy's request log (read after it has stopped): how
    many requests it logged, how many tried the faulty provider, and how those tries ended."""
    path = proxy.data_dir / "proxy.sqlite3"
    requests = """
        SELECT requested_model, COUNT(*), SUM(outcome = 'ok'),
               SUM(EXISTS(SELECT 1 FROM gateway_attempt a
                          WHERE a.request_id = r.id AND a.provider = ?))
        FROM gateway_requestlog r GROUP BY requested_model"""
    attempts = """
        SELECT r.requested_model, a.outcome, a.error_kind, COUNT(*)
        FROM gateway_attempt a JOIN gateway_requestlog r ON a.request_id = r.id
        WHERE a.provider = ? GROUP BY 1, 2, 3"""
    found: dict[str, LogTally] = {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            for model, count, ok, tried in db.execute(requests, (FAULTY_PROVIDER,)):
                found[model] = LogTally(int(count), int(ok or 0), int(tried or 0))
            for model, outcome, kind, count in db.execute(attempts, (FAULTY_PROVIDER,)):
                tally = found.setdefault(model, LogTally())
                tally.ends[f"{outcome} {kind}".strip()] = int(count)
    except sqlite3.Error:
        return {}
    return found
