"""`manage.py import_config FILE`: replace the configuration with a YAML file (or - for stdin)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.config_db import ApplyReport, apply_config
from gateway.config_file import ConfigError, parse_config


class Command(BaseCommand):
    help = "Replace the gateway configuration with a config file; nothing changes on an error."
    # Tests pass `stdin=` to call_command when FILE is "-".
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML config file, or - to read standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        text = _read(options["file"], options.get("stdin") or sys.stdin)
        try:
            parsed = parse_config(text)
            for warning in parsed.warnings:
                self.stderr.write(f"warning: {warning}")
            report = apply_config(parsed.spec)
        except ConfigError as exc:
            raise CommandError(str(exc)) from exc
        self._print_report(report)

    def _print_report(self, report: ApplyReport) -> None:
        for line in report.lines:
            self.stdout.write(line)
        if not report.changed:
            self.stdout.write("no changes")
        for name, key in report.new_keys:
            self.stdout.write(f"\nNew client key {name}: store it now, it will not be shown again.")
            self.stdout.write(f"  {key}")


def _read(file: str, stdin: TextIO) -> str:
    if file == "-":
        return stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {file}: {exc}") from exc
