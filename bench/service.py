"""A process under test, whatever it is: the proxy, nginx or LiteLLM.

The runner needs only where to send requests (a port per fake upstream: nginx forwards
bytes, so it listens once per upstream; the others route by model on one port) and which
process tree to read CPU and memory from. Keeping that in one shape is what lets a new
target be one more entry in bench/targets.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

FAST, SLOW = "fast", "slow"  # the fake that answers at once, and the paced one


@dataclass(kw_only=True)
class Service:
    name: str  # the target name its Anthropic-dialect rows get: "proxy", "nginx", ...
    role: str  # which bench/targets.py LINEUP entries measure it: "proxy", "litellm", ...
    proc: subprocess.Popen[bytes]  # the root of its process tree
    ports: dict[str, int]  # FAST/SLOW -> where it forwards to that fake
    log_path: Path
    about: str = ""  # what it is, for the notes: "uvicorn, 1 process", "nginx 1.22.1", ...
    idle_rss_kb: int = 0
    after_rss_kb: int = 0
    sent: int = 0  # requests the load generator sent it, warm-ups included

    @property
    def port(self) -> int:
        return self.ports[FAST]
