"""Install the peers on demand, idempotently, outside the project's venv.

nginx comes from Debian (`nginx-light`, through apt-get; sudo only when not root). LiteLLM
goes into a venv of its own under `.bench-peers/` (gitignored): its dependency pins would
fight the project's, and the project's tests must never import it. Both are pinned, so
that reruns compare like with like.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.procs import ROOT

NGINX_PACKAGE = "nginx-light"
LITELLM_VERSION = "1.108.7"
LITELLM_REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
PEERS_DIR = ROOT / ".bench-peers"
LITELLM_VENV = PEERS_DIR / "litellm-venv"
LITELLM_STAMP = LITELLM_VENV / ".installed"  # holds the requirement it was installed with
NGINX_PATHS = ("/usr/sbin/nginx", "/usr/bin/nginx")


def _say(text: str) -> None:
    print(f"[peers] {text}", file=sys.stderr, flush=True)


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    _say(" ".join(argv))
    subprocess.run(argv, check=True, env={**os.environ, **(env or {})})


def nginx_binary() -> Path | None:
    found = shutil.which("nginx")
    candidates = [found] if found else []
    candidates += [p for p in NGINX_PATHS if Path(p).exists()]
    return Path(candidates[0]) if candidates else None


def ensure_nginx() -> Path:
    """The nginx binary, installed from Debian first if missing."""
    binary = nginx_binary()
    if binary is not None:
        return binary
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = {"DEBIAN_FRONTEND": "noninteractive"}
    _run([*sudo, "apt-get", "update", "-qq"], apt)
    _run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", NGINX_PACKAGE], apt)
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError(f"{NGINX_PACKAGE} installed but no nginx binary found")
    return binary


def litellm_binary() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def ensure_litellm() -> Path:
    """The `litellm` command of the peers' venv, created and filled first if needed."""
    binary = litellm_binary()
    stamp_ok = LITELLM_STAMP.exists() and LITELLM_STAMP.read_text().strip() == LITELLM_REQUIREMENT
    if binary.exists() and stamp_ok:
        return binary
    PEERS_DIR.mkdir(exist_ok=True)
    python = LITELLM_VENV / "bin" / "python"
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(LITELLM_VENV)])
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--upgrade", "pip"])
    _run([*pip, LITELLM_REQUIREMENT])
    LITELLM_STAMP.write_text(LITELLM_REQUIREMENT + "\n")
    return binary


def main() -> None:
    """`python -m bench.peers.install`: install both, print where they are."""
    print(ensure_nginx())
    print(ensure_litellm())


if __name__ == "__main__":
    main()
