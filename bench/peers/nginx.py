"""nginx as a peer: a plain reverse proxy on loopback, the floor for any proxy's cost.

Its own config file (nginx.conf.template beside this module) with one worker process,
every path inside the bench's directory, keep-alive connections to the fakes and no
buffering; started in the foreground as a child of the bench and stopped by PID.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from string import Template

from bench import procs
from bench.service import FAST, SLOW, Service

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"


def version(binary: Path) -> str:
    """`nginx/1.22.1`, from `nginx -v` (which prints on stderr)."""
    done = subprocess.run([str(binary), "-v"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().rsplit(" ", 1)[-1] or "nginx"


def render(directory: Path, fake_ports: dict[str, int], ports: dict[str, int]) -> str:
    return Template(TEMPLATE.read_text()).substitute(
        dir=str(directory),
        fast_upstream=fake_ports[FAST],
        slow_upstream=fake_ports[SLOW],
        fast_port=ports[FAST],
        slow_port=ports[SLOW],
    )


def start(
    binary: Path, workdir: Path, exits: contextlib.ExitStack, fake_ports: dict[str, int]
) -> Service:
    """nginx listening once per fake, up and answering through to the fake."""
    directory = workdir / "nginx"
    directory.mkdir()
    ports = {FAST: procs.free_port(), SLOW: procs.free_port()}
    config = directory / "nginx.conf"
    config.write_text(render(directory, fake_ports, ports))
    log_path = workdir / "nginx.log"
    # -e: the error log from the start, before the config is read (the compiled-in path
    # under /var/log may not be writable); -p: the prefix for any relative path.
    argv = [str(binary), "-e", str(directory / "error.log"), "-p", str(directory)]
    argv += ["-c", str(config)]
    proc = exits.enter_context(procs.running(argv, log_path, cwd=directory))
    for port in ports.values():
        procs.wait_http_ok(f"http://127.0.0.1:{port}/v1/models", proc, log_path)
    return Service(
        name="nginx",
        role="nginx",
        proc=proc,
        ports=ports,
        log_path=directory / "error.log",
        about=f"{version(binary)}, 1 worker process, keep-alive to the fake, no buffering",
    )
