"""Child processes (started in their own session, always stopped by PID) and /proc readings."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_GRACE = 5.0


class ChildFailed(RuntimeError):
    """A child process died or never became ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Never inherited by the bench's children: every service under test keeps its state in
# the bench's own temporary directory, never in a database named by the caller's shell.
DROPPED_ENV = ("DATABASE_URL",)


def child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
    return {**base, **(env or {})}


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> subprocess.Popen[bytes]:
    """Start a child in a new session (its own process group), output to `log_path`."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def spawn_talking(argv: Sequence[str], errors_path: Path) -> subprocess.Popen[str]:
    """Start a load generator: its own session, text stdin/stdout pipes to talk to it
    ("ready", "go", a JSON line), stderr appended to `errors_path`."""
    with errors_path.open("ab") as errors:
        return subprocess.Popen(
            list(argv),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], patience: float = 0.0) -> None:
    """After `patience` seconds for it to exit by itself, SIGTERM the child's process group
    (its id is the child's PID, from start_new_session), then SIGKILL if it lingers."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=patience)
    if proc.poll() is not None:
        return
    for signum, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, STOP_GRACE)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn(argv, log_path, env, cwd)
    try:
        yield proc
    finally:
        stop(proc)


def run_checked(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str], timeout: float = 120.0
) -> None:
    """Run a short command to completion; on failure raise with the end of its output."""
    with running(argv, log_path, env) as proc:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ChildFailed(f"{' '.join(argv)} took over {timeout:g}s") from exc
    if code != 0:
        raise ChildFailed(f"{' '.join(argv)} exited {code}:\n{log_tail(log_path)}")


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_http_ok(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0
) -> None:
    """Poll `url` until it answers 200; fail early if the child dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ChildFailed(
                f"exited {proc.returncode} before {url} was up:\n{log_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise ChildFailed(f"{url} did not answer 200 within {timeout:g}s:\n{log_tail(log_path)}")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from a single scan of /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def rss_kb(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of the processes (and of children they have reaped)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (first line of /proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLOCK_TICKS


class RssSampler:
    """Samples the summed VmRSS of `pids` every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, pids: Sequence[int], interval: float = 0.1) -> None:
        self.pids = list(pids)
        self.interval = interval
        self.peak_kb = rss_kb(self.pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kb = max(self.peak_kb, rss_kb(self.pids))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.peak_kb = max(self.peak_kb, rss_kb(self.pids))
