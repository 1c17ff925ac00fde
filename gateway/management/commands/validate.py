"""`manage.py validate`: check the configured models against each provider's `/v1/models`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway import catalog
from gateway.config_db import export_config
from gateway.config_file import ConfigError, ConfigSpec, format_config, parse_config


class Command(BaseCommand):
    help = (
        "Call each provider's /v1/models and report, per configured model, whether it is "
        "listed and its context window; exits non-zero when something is wrong."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--config", metavar="FILE", help="check this file, not the database")
        parser.add_argument(
            "--write", metavar="PATH", help="write the config with refreshed context windows"
        )
        parser.add_argument(
            "--dump-provider",
            metavar="NAME",
            action="append",
            default=[],
            help="print the raw /v1/models JSON of this provider (repeatable)",
        )
        parser.add_argument(
            "--apply",
            action="store_true",
            help="store the refreshed context windows in the database (without --config)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            default=catalog.DEFAULT_TIMEOUT,
            help="seconds per provider request (default %(default)s)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["apply"] and options["config"]:
            raise CommandError("--apply updates the database; with --config use --write instead")
        spec = self._load(options["config"])
        dumps = list(dict.fromkeys(options["dump_provider"]))
        unknown = sorted(set(dumps) - {p.name for p in spec.providers})
        if unknown:
            raise CommandError(f"--dump-provider: no provider named {', '.join(unknown)}")
        report = catalog.check(spec, options["timeout"])
        for name in dumps:
            self._dump(next(p for p in report.providers if p.name == name))
        for line in catalog.render(report):
            self.stdout.write(line)
        if options["write"]:
            self._write(options["write"], catalog.refreshed(spec, report))
        if options["apply"]:
            changes = catalog.store_contexts(report)
            for line in changes or ["no context windows changed in the database"]:
                self.stdout.write(line)
        problems = report.problems()
        if problems:
            raise CommandError(f"validation failed: {'; '.join(problems)}")

    def _load(self, path: str | None) -> ConfigSpec:
        if path is None:
            return export_config()
        try:
            parsed = parse_config(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except ConfigError as exc:
            raise CommandError(f"{path}: {exc}") from exc
        for warning in parsed.warnings:
            self.stderr.write(f"warning: {warning}")
        return parsed.spec

    def _dump(self, result: catalog.ProviderResult) -> None:
        pages = len(result.payloads)
        self.stdout.write(f"== {result.name} ({result.dialect}) GET {result.url}: {pages} page(s)")
        if not result.payloads:
            self.stdout.write(f"(no payload: {result.detail or result.state})")
        for payload in result.payloads:
            self.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False))
        self.stdout.write("")

    def _write(self, path: str, spec: ConfigSpec) -> None:
        """Owner-only, as export_config writes: the file may hold provider keys."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(format_config(spec))
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc}") from exc
        self.stdout.write(f"wrote {path}")
