"""`serve --workers N`: N server processes on one port, each with its own listening socket.

Why not uvicorn's own `--workers`: its children share one listening socket, and the kernel
hands most new connections to whichever child happens to be awake, so one core ends up
doing most of the work. Here each child binds its own socket with SO_REUSEPORT and the
kernel spreads new connections across them by a hash of the addresses.

The `serve` process itself becomes the supervisor: it starts the children (each a
`manage.py serve` with hidden worker options), forwards SIGTERM/SIGINT and waits while
uvicorn lets open streams finish, restarts a child that dies unexpectedly after a backoff,
and gives up (exit status 1) when children keep dying right after they start, so that a
broken setup does not spin forever.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

APP = "proxy_site.asgi:application"


# A worker's shutdown: drain, grace, the ending of what is left, the log flush (see
# gateway/lifecycle.py); the supervisor waits that long plus a margin, then SIGKILLs.
def stop_timeout_default() -> float:
    from django.conf import settings

    return settings.DRAIN_SECONDS + settings.SHUTDOWN_GRACE_SECONDS + 30.0


POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>

Spawn = Callable[[int], "subprocess.Popen[bytes]"]


def worker_count(value: str) -> int:
    """`--workers` values: a positive number, or `0` / `auto` for one per core."""
    if value.strip().lower() in ("0", "auto"):
        return os.cpu_count() or 1
    try:
        count = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from exc
    if count < 0:
        raise argparse.ArgumentTypeError("must be 0 (auto) or more")
    return count


def uvicorn_options(log_level: str) -> dict[str, Any]:
    """The server options every process uses, single or worker (uvloop + httptools were
    measured fastest; see the README's Performance section)."""
    from gateway.http_protocol import GatewayHttpProtocol

    return {
        "loop": "uvloop",
        "http": GatewayHttpProtocol,  # httptools, with the gateway's limits at the door
        "lifespan": "on",
        "log_level": "warning" if log_level == "WARN" else log_level.lower(),
        "access_log": False,
    }


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT, not yet listening: the server's
    `listen()` adds it to the kernel's group only once the app has started, so no
    connection waits on a worker that is still starting."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def check_port(host: str, port: int) -> None:
    """Fail at once, in the supervisor, when the port cannot be bound (in use by a process
    without SO_REUSEPORT, or not allowed), instead of watching every child die."""
    reuseport_socket(host, port).close()


def worker_log_path(path: str, index: int) -> str:
    """One JSONL file per worker: a size-rotated file cannot be shared between processes."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}-worker{index}{p.suffix}"))


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux for SIGTERM when the supervisor goes (even by SIGKILL), so a worker never
    outlives it; elsewhere this does nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it went before we asked
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child that exited: at once-ish after a long life, with a doubling
    delay while it keeps dying within `settle` seconds of its start, and never again after
    `give_up` such deaths in a row."""

    settle: float = 10.0
    first_delay: float = 0.5
    max_delay: float = 10.0
    give_up: int = 5

    def after_exit(self, streak: int, lived: float) -> tuple[int, float | None]:
        """The slot's new streak of quick deaths, and the delay before the restart (None:
        stop trying)."""
        streak = streak + 1 if lived < self.settle else 0
        if streak >= self.give_up:
            return streak, None
        return streak, min(self.first_delay * 2 ** max(streak - 1, 0), self.max_delay)


@dataclass
class _Slot:
    index: int
    child: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    streak: int = 0
    restart_at: float | None = None


class Supervisor:
    """Keeps `count` children running until asked to stop; see the module docstring."""

    def __init__(
        self,
        count: int,
        spawn: Spawn,
        *,
        policy: RestartPolicy | None = None,
        stop_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = [_Slot(index) for index in range(count)]
        self.spawn = spawn
        self.policy = policy or RestartPolicy()
        self.stop_timeout = stop_timeout_default() if stop_timeout is None else stop_timeout
        self.clock = clock
        self.stopping = False
        self.gave_up = False

    def start(self) -> None:
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        slot.child = self.spawn(slot.index)
        slot.started_at = self.clock()
        log.info("worker %d started (pid %d)", slot.index, slot.child.pid)

    def step(self) -> None:
        """Reap children that exited and start the restarts that are due."""
        now = self.clock()
        for slot in self.slots:
            if slot.child is not None and slot.child.poll() is not None:
                self._exited(slot, now)
            if slot.restart_at is not None and slot.restart_at <= now and not self.stopping:
                self._start(slot)

    def _exited(self, slot: _Slot, now: float) -> None:
        assert slot.child is not None
        code, pid, lived = slot.child.returncode, slot.child.pid, now - slot.started_at
        slot.child = None
        if self.stopping:
            return
        slot.streak, delay = self.policy.after_exit(slot.streak, lived)
        if delay is None:
            log.error(
                "worker %d (pid %d) exited with status %s %d times in a row within %gs of "
                "starting; giving up",
                slot.index,
                pid,
                code,
                slot.streak,
                self.policy.settle,
            )
            self.gave_up = True
            self.request_stop()
            return
        log.warning(
            "worker %d (pid %d) exited unexpectedly with status %s after %.1fs; restarting in %gs",
            slot.index,
            pid,
            code,
            lived,
            delay,
        )
        slot.restart_at = now + delay

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward a stop to every child. A second request forwards SIGINT, which uvicorn
        takes as "stop now" (open streams are cut)."""
        forward = signal.SIGINT if self.stopping and signum == signal.SIGINT else signal.SIGTERM
        self.stopping = True
        self._signal_all(forward)

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.child is not None and slot.child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.child.send_signal(signum)

    def wait_stopped(self) -> None:
        """Wait for every child to exit, up to `stop_timeout`; then SIGKILL the rest."""
        # Again, for a child started just as the stop came (uvicorn ignores a repeat).
        self._signal_all(signal.SIGTERM)
        deadline = self.clock() + self.stop_timeout
        for slot in self.slots:
            if slot.child is None:
                continue
            try:
                slot.child.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop; killing it", slot.index, slot.child.pid)
                slot.child.kill()
                slot.child.wait()
            slot.child = None

    def run(self, *, install_signals: bool = True) -> int:
        """Start, supervise until SIGTERM/SIGINT (or giving up), stop. 0, or 1 on giving up."""
        previous = self._install_signals() if install_signals else {}
        try:
            self.start()
            while not self.stopping:
                time.sleep(POLL_SECONDS)
                self.step()
        finally:
            self.stopping = True
            self.wait_stopped()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return 1 if self.gave_up else 0

    def _install_signals(self) -> dict[int, Any]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("stopping %d workers (signal %d)", len(self.slots), signum)
            self.request_stop(signum)

        return {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}


def worker_argv(
    manage_py: Path, host: str, port: int, index: int, forwarded: Sequence[str]
) -> list[str]:
    """The command line of worker `index`: `manage.py serve` with the hidden worker options
    (the supervisor has run Django's system checks already)."""
    return [
        sys.executable,
        str(manage_py),
        "serve",
        "--skip-checks",
        "--host",
        host,
        "--port",
        str(port),
        "--worker-of",
        str(os.getpid()),
        "--worker-index",
        str(index),
        *forwarded,
    ]


def process_spawner(manage_py: Path, host: str, port: int, forwarded: Sequence[str]) -> Spawn:
    """Children in their own process group: a Ctrl-C on the terminal reaches only the
    supervisor, which forwards one orderly stop (two would make uvicorn cut streams)."""

    def spawn(index: int) -> subprocess.Popen[bytes]:
        argv = worker_argv(manage_py, host, port, index, forwarded)
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, process_group=0)

    return spawn


def serve_worker(host: str, port: int, log_level: str) -> None:
    """Run this process as one worker: uvicorn on its own SO_REUSEPORT socket."""
    import uvicorn

    sock = reuseport_socket(host, port)
    config = uvicorn.Config(APP, host=host, port=port, **uvicorn_options(log_level))
    gateway_server(config).run(sockets=[sock])


def gateway_server(config: Any) -> Any:
    """The server every process runs: uvicorn's, with the drain-then-grace shutdown."""
    from django.conf import settings

    from gateway.server import GatewayServer

    drain, grace = settings.DRAIN_SECONDS, settings.SHUTDOWN_GRACE_SECONDS
    return GatewayServer(config, drain=drain, grace=grace)
