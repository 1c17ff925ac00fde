"""Install (if needed) and start both peers: stack.Plan.peers calls `start`."""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.peers import install, litellm, nginx
from bench.service import Service


def ensure_installed() -> None:
    """Before any process starts: an install failure should not leave a half-run."""
    install.ensure_nginx()
    install.ensure_litellm()


def start(workdir: Path, exits: contextlib.ExitStack, fake_ports: dict[str, int]) -> list[Service]:
    nginx_binary = install.ensure_nginx()
    litellm_binary = install.ensure_litellm()
    return [
        nginx.start(nginx_binary, workdir, exits, fake_ports),
        litellm.start(litellm_binary, install.LITELLM_VERSION, workdir, exits, fake_ports),
    ]
