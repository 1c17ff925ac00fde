"""`manage.py serve [--host H] [--port P] [--workers N] [--watch FILE]`: the proxy and its
dashboard on one port.

With `--workers N` (N > 1, or `auto` for one per core) this process supervises N worker
processes, each a `serve` on its own SO_REUSEPORT socket (see gateway/workers.py); with
the default of 1 it serves by itself, as it always has.

With `--watch FILE` a daemon thread polls the config file once a second; on a change it
shows the diff and asks "apply? [y/N]" on a terminal, or else leaves it for review in the
dashboard (a banner on every page). An invalid file is reported and changes nothing. With
workers, the watcher runs in the supervisor alone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import workers

APP = workers.APP


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
            "--workers",
            type=workers.worker_count,
            default=1,
            help="server processes on this port, each with its own socket (SO_REUSEPORT); "
            "0 or 'auto': one per core (default 1)",
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
            "secrets redacted, bodies capped; one file per worker with --workers)",
        )
        parser.add_argument(
            "--watch",
            metavar="FILE",
            default=None,
            help="watch this config file: on a change show the diff and ask to apply "
            "(on a terminal), or leave it for review in the dashboard",
        )
        # Set by the supervisor on its workers' command lines, not by people.
        parser.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)

    def handle(self, *args: Any, host: str, port: int, server: str, **options: Any) -> None:
        if options.get("tps_threshold") is not None:
            settings.TPS_THRESHOLD = options["tps_threshold"]
        if options.get("log_file"):
            settings.LOG_FILE = options["log_file"]
        if options.get("worker_of") is not None:
            self._worker(host, port, options["worker_of"], options["worker_index"])
            return
        count = options["workers"]
        if count > 1:
            self._supervise(host, port, server, count, options)
            return
        if options.get("watch"):
            self._watch(options["watch"])
        self.stdout.write(f"anthropic-proxy listening on http://{host}:{port} ({server})")
        if server == "daphne":
            from daphne.cli import CommandLineInterface

            CommandLineInterface().run(["-b", host, "-p", str(port), APP])
            return
        import uvicorn

        config = uvicorn.Config(
            APP, host=host, port=port, **workers.uvicorn_options(settings.LOG_LEVEL)
        )
        workers.gateway_server(config).run()

    def _supervise(
        self, host: str, port: int, server: str, count: int, options: dict[str, Any]
    ) -> None:
        if server != "uvicorn":
            raise CommandError("--workers needs --server uvicorn")
        try:
            workers.check_port(host, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from exc
        self._prepare_shared_files()
        if not settings.REDIS_URL:
            self.stderr.write(
                "warning: REDIS_URL is not set, so each worker keeps its own circuits, "
                "measured speeds and live figures (the dashboard and /live.json show the "
                "worker that answers) and counts per-key concurrency and requests per "
                "minute on its own. Set REDIS_URL to share them."
            )
        if options.get("watch"):
            self._watch(options["watch"])
        forwarded = []
        if settings.TPS_THRESHOLD is not None:
            forwarded += ["--tps-threshold", str(settings.TPS_THRESHOLD)]
        if options.get("log_file"):
            forwarded += ["--log-file", options["log_file"]]
        spawn = workers.process_spawner(settings.BASE_DIR / "manage.py", host, port, forwarded)
        self.stdout.write(
            f"anthropic-proxy listening on http://{host}:{port} (uvicorn, {count} workers)"
        )
        self.stdout.flush()
        sys.exit(workers.Supervisor(count, spawn).run())

    @staticmethod
    def _prepare_shared_files() -> None:
        """Create the data-dir secrets once, here, before N workers all look for them."""
        from gateway import vault

        vault.encrypt("")

    def _worker(self, host: str, port: int, parent: int, index: int) -> None:
        workers.die_with_parent(parent)
        if settings.LOG_FILE:
            settings.LOG_FILE = workers.worker_log_path(settings.LOG_FILE, index)
        settings.SERVE_RETENTION = settings.SERVE_RETENTION and index == 0
        workers.serve_worker(host, port, settings.LOG_LEVEL)

    def _watch(self, path: str) -> None:
        from dashboard.watch import ConfigWatcher

        interactive = sys.stdin.isatty()
        watcher = ConfigWatcher(path, interactive=interactive, say=self.stdout.write)
        watcher.start()
        where = "asking here" if interactive else "changes await review in the dashboard"
        self.stdout.write(f"watching {path} for changes ({where})")
