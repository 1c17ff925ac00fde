"""`serve --workers N`'s supervisor (gateway.workers), with tiny real child processes."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from gateway.workers import (
    RestartPolicy,
    Supervisor,
    check_port,
    reuseport_socket,
    worker_count,
    worker_log_path,
)

QUICK = RestartPolicy(settle=5.0, first_delay=0.01, max_delay=0.05, give_up=3)
# Each child says "ready" once its signal handlers are in place.
SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"
GRACEFUL = (
    "import signal, sys, time\n"
    "def stop(*_):\n    time.sleep(0.3); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True); time.sleep(60)"
)
STUBBORN = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGINT, lambda *_: exit(5))\n"
    "print('ready', flush=True); time.sleep(60)"
)


def python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def ready(child: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    return child


@pytest.fixture
def supervisors() -> Iterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(count: int, spawn: Callable[[int], subprocess.Popen[bytes]], **kw) -> Supervisor:
        made.append(Supervisor(count, spawn, **kw))
        return made[-1]

    yield make
    for supervisor in made:  # never leave a child behind, whatever the test did
        supervisor.stopping = True
        supervisor.stop_timeout = 0.5
        supervisor.wait_stopped()


def until(check: Callable[[], bool], supervisor: Supervisor, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not true in time"
        supervisor.step()
        time.sleep(0.01)


def test_workers_auto_and_zero_mean_one_per_core() -> None:
    assert worker_count("auto") == worker_count("0") >= 1
    assert worker_count("3") == 3
    with pytest.raises(argparse.ArgumentTypeError):
        worker_count("many")


def test_quick_deaths_back_off_doubling_then_give_up() -> None:
    policy = RestartPolicy(settle=10, first_delay=0.5, max_delay=1.5, give_up=4)
    assert policy.after_exit(0, lived=1.0) == (1, 0.5)
    assert policy.after_exit(1, lived=1.0) == (2, 1.0)
    assert policy.after_exit(2, lived=1.0) == (3, 1.5)
    assert policy.after_exit(3, lived=1.0) == (4, None)


def test_a_child_that_lived_past_settling_restarts_at_once_with_a_clean_streak() -> None:
    policy = RestartPolicy(settle=10, first_delay=0.5, give_up=2)
    assert policy.after_exit(1, lived=3600.0) == (0, 0.5)


def test_a_child_that_dies_is_restarted(
    supervisors: Callable[..., Supervisor],
) -> None:
    spawned: list[int] = []

    def spawn(index: int) -> subprocess.Popen[bytes]:
        spawned.append(index)
        return python("raise SystemExit(7)" if len(spawned) == 1 else SLEEPER)

    supervisor = supervisors(2, spawn, policy=QUICK)
    supervisor.start()
    until(lambda: len(spawned) == 3, supervisor)
    assert sorted(spawned) == [0, 0, 1]
    assert all(slot.child is not None and slot.child.poll() is None for slot in supervisor.slots)


def test_children_that_keep_dying_at_start_make_it_exit_non_zero(
    supervisors: Callable[..., Supervisor],
) -> None:
    spawned: list[int] = []

    def spawn(index: int) -> subprocess.Popen[bytes]:
        spawned.append(index)
        return python("raise SystemExit(3)")

    started = time.monotonic()
    assert supervisors(1, spawn, policy=QUICK).run(install_signals=False) == 1
    assert len(spawned) == QUICK.give_up and time.monotonic() - started < 10


def test_stop_forwards_sigterm_and_waits_for_a_graceful_exit(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors(2, lambda index: ready(python(GRACEFUL)))
    supervisor.start()
    children = [slot.child for slot in supervisor.slots]
    supervisor.request_stop(signal.SIGTERM)
    supervisor.wait_stopped()
    assert [child.returncode for child in children if child is not None] == [0, 0]


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors(1, lambda index: ready(python(STUBBORN)), stop_timeout=0.3)
    supervisor.start()
    child = supervisor.slots[0].child
    supervisor.request_stop()
    supervisor.wait_stopped()
    assert child is not None and child.returncode == -signal.SIGKILL


def test_a_second_interrupt_is_forwarded_as_sigint_to_stop_now(
    supervisors: Callable[..., Supervisor],
) -> None:
    supervisor = supervisors(1, lambda index: ready(python(STUBBORN)), stop_timeout=5.0)
    supervisor.start()
    child = supervisor.slots[0].child
    supervisor.request_stop(signal.SIGINT)  # the first: an orderly SIGTERM (ignored here)
    supervisor.request_stop(signal.SIGINT)  # the second: SIGINT, uvicorn's "force exit"
    supervisor.wait_stopped()
    assert child is not None and child.returncode == 5


def test_no_restart_once_stopping(supervisors: Callable[..., Supervisor]) -> None:
    spawned: list[int] = []

    def spawn(index: int) -> subprocess.Popen[bytes]:
        spawned.append(index)
        return ready(python(SLEEPER))

    supervisor = supervisors(1, spawn, policy=QUICK)
    supervisor.start()
    supervisor.request_stop()
    supervisor.wait_stopped()
    supervisor.step()
    time.sleep(0.05)
    supervisor.step()
    assert spawned == [0]


def test_two_sockets_share_a_port_with_reuseport() -> None:
    first = reuseport_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = reuseport_socket("127.0.0.1", port)
    first.listen()
    second.listen()
    first.close()
    second.close()


def test_a_port_held_without_reuseport_is_reported_before_any_worker_starts() -> None:
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", 0))
        plain.listen()
        with pytest.raises(OSError):
            check_port("127.0.0.1", plain.getsockname()[1])


def test_each_worker_writes_its_own_jsonl_file() -> None:
    assert worker_log_path("/var/log/proxy/requests.jsonl", 2) == (
        "/var/log/proxy/requests-worker2.jsonl"
    )
