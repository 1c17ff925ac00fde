"""LiteLLM as a peer: its proxy server on loopback, one worker, offline, no database.

Configured by litellm.yaml.template beside this module with the same model names as the
proxy, so the load generator sends both the same requests to the same `/v1/messages`.
`LITELLM_LOCAL_MODEL_COST_MAP=True` keeps it from fetching its cost map at start-up (the
bench runs without the internet); the master key it insists on is the bench's client key.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from string import Template

from bench import procs
from bench.service import FAST, SLOW, Service
from bench.stack import API_KEY

TEMPLATE = Path(__file__).resolve().parent / "litellm.yaml.template"
START_TIMEOUT = 180.0  # seconds: it imports a great deal before it listens
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_MODE": "PRODUCTION",  # no .env file read from the working directory
}


def render(fake_ports: dict[str, int]) -> str:
    return Template(TEMPLATE.read_text()).substitute(
        fast_upstream=fake_ports[FAST],
        slow_upstream=fake_ports[SLOW],
        master_key=API_KEY,
    )


def start(
    binary: Path,
    version: str,
    workdir: Path,
    exits: contextlib.ExitStack,
    fake_ports: dict[str, int],
) -> Service:
    """`litellm --config FILE --num_workers 1`, up and passing its liveness check."""
    directory = workdir / "litellm"
    directory.mkdir()
    config = directory / "litellm.yaml"
    config.write_text(render(fake_ports))
    port = procs.free_port()
    log_path = workdir / "litellm.log"
    argv = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    proc = exits.enter_context(procs.running(argv, log_path, ENV, cwd=directory))
    url = f"http://127.0.0.1:{port}/health/liveliness"
    procs.wait_http_ok(url, proc, log_path, timeout=START_TIMEOUT)
    return Service(
        name="litellm",
        role="litellm",
        proc=proc,
        ports={FAST: port, SLOW: port},
        log_path=log_path,
        about=f"LiteLLM {version}, `--num_workers 1`, master key, no database",
    )
