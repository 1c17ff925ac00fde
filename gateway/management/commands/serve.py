"""`manage.py serve [--host H] [--port P] [--watch FILE]`: the proxy and its dashboard on one port.

With `--watch FILE` a daemon thread polls the config file once a second; on a change it
shows the diff and asks "apply? [y/N]" on a terminal, or else leaves it for review in the
dashboard (a banner on every page). An invalid file is reported and changes nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

APP = "proxy_site.asgi:application"


class Command(BaseCommand):
    help = "Run the gateway (ASGI) on HOST:PORT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument(
            "--server",
            choices=["uvicorn", "daphne"],
            default="uvicorn",
            help="ASGI server (uvicorn with uvloop+httptools measured faster; see README)",
        )
        parser.add_argument(
            "--tps-threshold",
            type=float,
            default=None,
            help="routes measured below this many output tokens/s go last "
            "(overrides routing.tpsThreshold; default 40)",
        )
        parser.add_argument(
            "--log-file",
            default=None,
            help="also write every request as one JSON line to this file (rotated by size; "
            "secrets redacted, bodies capped)",
        )
        parser.add_argument(
            "--watch",
            metavar="FILE",
            default=None,
            help="watch this config file: on a change show the diff and ask to apply "
            "(on a terminal), or leave it for review in the dashboard",
        )

    def handle(self, *args: Any, host: str, port: int, server: str, **options: Any) -> None:
        if options.get("tps_threshold") is not None:
            settings.TPS_THRESHOLD = options["tps_threshold"]
        if options.get("log_file"):
            settings.LOG_FILE = options["log_file"]
        if options.get("watch"):
            self._watch(options["watch"])
        self.stdout.write(f"anthropic-proxy listening on http://{host}:{port} ({server})")
        if server == "daphne":
            from daphne.cli import CommandLineInterface

            CommandLineInterface().run(["-b", host, "-p", str(port), APP])
            return
        import uvicorn

        uvicorn.run(
            APP,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level=settings.LOG_LEVEL.lower() if settings.LOG_LEVEL != "WARN" else "warning",
            access_log=False,
            timeout_graceful_shutdown=30,
        )

    def _watch(self, path: str) -> None:
        from dashboard.watch import ConfigWatcher

        interactive = sys.stdin.isatty()
        watcher = ConfigWatcher(path, interactive=interactive, say=self.stdout.write)
        watcher.start()
        where = "asking here" if interactive else "changes await review in the dashboard"
        self.stdout.write(f"watching {path} for changes ({where})")
