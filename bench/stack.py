"""The processes under test: one fake upstream, one configured proxy per ASGI server, and
(for the failover figures) two more uvicorn proxies with failover routes of their own."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs

API_KEY = "sk-bench-client-key-0123456789"
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
models:
  - name: claude-bench
    provider: fake
    alias: "bench*"
  - name: gpt-bench
    provider: fake_openai
    alias: "oai*"
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


@dataclass
class Proxy:
    server: str
    port: int
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    idle_rss_kb: int = 0
    after_rss_kb: int = 0
    sent: int = 0  # requests the load generator sent it, warm-ups included
    log_rows: int | None = None  # RequestLog rows written by the end
    label: str = ""  # the failover proxies' name ("failover", "circuit"); "" for the others


@dataclass
class Stack:
    fake_port: int
    fake: subprocess.Popen[bytes]
    workdir: Path
    proxies: dict[str, Proxy] = field(default_factory=dict)
    failover: dict[str, Proxy] = field(default_factory=dict)  # by label, all uvicorn


def start_fake(
    workdir: Path, stack: contextlib.ExitStack, tokens: int
) -> tuple[int, subprocess.Popen[bytes]]:
    port = procs.free_port()
    log_path = workdir / "fake_upstream.log"
    argv = [procs.PYTHON, "-m", "bench.upstream_proc", "--port", str(port), "--tokens", str(tokens)]
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
    workdir: Path, template: Path, server: str, stack: contextlib.ExitStack, label: str = ""
) -> Proxy:
    name = label or server
    data_dir = workdir / f"data-{name}"
    shutil.copytree(template, data_dir)
    port = procs.free_port()
    log_path = workdir / f"proxy-{name}.log"
    argv = [procs.PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--server", server]
    proc = stack.enter_context(procs.running(argv, log_path, {"DATA_DIR": str(data_dir)}))
    procs.wait_http_ok(f"http://127.0.0.1:{port}/health", proc, log_path)
    return Proxy(server, port, proc, data_dir, log_path, label=label)


@contextlib.contextmanager
def running_stack(
    workdir: Path, servers: Sequence[str], tokens: int, failover: bool = False
) -> Iterator[Stack]:
    """Everything up and idle; on exit every process is stopped, whatever happened."""
    with contextlib.ExitStack() as exits:
        fake_port, fake = start_fake(workdir, exits, tokens)
        configs = {"bench": CONFIG_TEMPLATE.format(port=fake_port, key=API_KEY)}
        if failover:
            for label, circuit in FAILOVER_PROXIES.items():
                configs[label] = failover_config(fake_port, circuit)
        templates = prepare_data(workdir, configs)
        stack = Stack(fake_port, fake, workdir)
        for server in servers:
            stack.proxies[server] = start_proxy(workdir, templates["bench"], server, exits)
        if failover:
            for label in FAILOVER_PROXIES:
                proxy = start_proxy(workdir, templates[label], "uvicorn", exits, label)
                stack.failover[label] = proxy
        time.sleep(IDLE_SETTLE)
        everyone = [*stack.proxies.values(), *stack.failover.values()]
        for proxy in everyone:
            proxy.idle_rss_kb = procs.rss_kb(procs.process_tree(proxy.proc.pid))
        yield stack
        for proxy in everyone:
            proxy.after_rss_kb = procs.rss_kb(procs.process_tree(proxy.proc.pid))


def count_log_rows(proxy: Proxy) -> int | None:
    """RequestLog rows in the proxy's database, read after the proxy has stopped."""
    path = proxy.data_dir / "proxy.sqlite3"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM gateway_requestlog").fetchone()[0])
    except sqlite3.Error:
        return None


def log_problems(proxy: Proxy, limit: int = 8) -> tuple[int, list[str]]:
    """How many lines of the proxy's output look like trouble, and the first few."""
    words = ("ERROR", "Traceback", "WARNING", "Exception", "CRITICAL")
    lines = procs.log_tail(proxy.log_path, lines=100_000).splitlines()
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
