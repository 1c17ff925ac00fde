"""`manage.py export_config [FILE]`: write the stored configuration as a config file."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gateway.config_db import export_config
from gateway.config_file import format_config


class Command(BaseCommand):
    help = "Write the configuration as YAML (provider keys encrypted, client keys as hashes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="where to write; standard output if omitted")

    def handle(self, *args: Any, **options: Any) -> None:
        text = format_config(export_config())
        if not options["file"]:
            self.stdout.write(text, ending="")
            return
        try:
            _write_private(options["file"], text)
        except OSError as exc:
            raise CommandError(f"cannot write {options['file']}: {exc}") from exc
        self.stderr.write(f"wrote {options['file']}")


def _write_private(path: str, text: str) -> None:
    """Readable by the owner only: the file holds encrypted keys and key hashes."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
