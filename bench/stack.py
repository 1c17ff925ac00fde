"""The processes under test: one fake upstream, and one configured proxy per ASGI server."""

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


@dataclass
class Stack:
    fake_port: int
    fake: subprocess.Popen[bytes]
    workdir: Path
    proxies: dict[str, Proxy] = field(default_factory=dict)


def start_fake(
    workdir: Path, stack: contextlib.ExitStack, tokens: int
) -> tuple[int, subprocess.Popen[bytes]]:
    port = procs.free_port()
    log_path = workdir / "fake_upstream.log"
    argv = [procs.PYTHON, "-m", "bench.upstream_proc", "--port", str(port), "--tokens", str(tokens)]
    fake = stack.enter_context(procs.running(argv, log_path))
    procs.wait_http_ok(f"http://127.0.0.1:{port}/v1/models", fake, log_path)
    return port, fake


def prepare_data(workdir: Path, fake_port: int) -> Path:
    """Migrate a fresh SQLite database and import the bench configuration into it, once."""
    template = workdir / "data-template"
    template.mkdir()
    config = workdir / "bench.config.yaml"
    config.write_text(CONFIG_TEMPLATE.format(port=fake_port, key=API_KEY))
    env = {"DATA_DIR": str(template)}
    log_path = workdir / "setup.log"
    procs.run_checked([procs.PYTHON, "manage.py", "migrate", "--noinput"], log_path, env)
    procs.run_checked([procs.PYTHON, "manage.py", "import_config", str(config)], log_path, env)
    return template


def start_proxy(workdir: Path, template: Path, server: str, stack: contextlib.ExitStack) -> Proxy:
    data_dir = workdir / f"data-{server}"
    shutil.copytree(template, data_dir)
    port = procs.free_port()
    log_path = workdir / f"proxy-{server}.log"
    argv = [procs.PYTHON, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--server", server]
    proc = stack.enter_context(procs.running(argv, log_path, {"DATA_DIR": str(data_dir)}))
    procs.wait_http_ok(f"http://127.0.0.1:{port}/health", proc, log_path)
    return Proxy(server, port, proc, data_dir, log_path)


@contextlib.contextmanager
def running_stack(workdir: Path, servers: Sequence[str], tokens: int) -> Iterator[Stack]:
    """Everything up and idle; on exit every process is stopped, whatever happened."""
    with contextlib.ExitStack() as exits:
        fake_port, fake = start_fake(workdir, exits, tokens)
        template = prepare_data(workdir, fake_port)
        stack = Stack(fake_port, fake, workdir)
        for server in servers:
            stack.proxies[server] = start_proxy(workdir, template, server, exits)
        time.sleep(IDLE_SETTLE)
        for proxy in stack.proxies.values():
            proxy.idle_rss_kb = procs.rss_kb(procs.process_tree(proxy.proc.pid))
        yield stack
        for proxy in stack.proxies.values():
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
