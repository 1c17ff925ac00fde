"""`serve --watch FILE`: notice when the config file changes and offer its diff for review.

`review(path)` parses and validates the file and diffs it against the database exactly as
the dashboard's config page does (secrets masked). `ConfigWatcher` polls the file's mtime
and size; on a change it either asks on the terminal ("apply? [y/N]") or stores a
`PendingConfig` for the dashboard's banner. An invalid file is reported and changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import close_old_connections, connections, transaction

from dashboard.config_diff import ConfigDiff, DiffLine, diff_against_database
from gateway import vault
from gateway.config_db import ApplyReport, apply_config
from gateway.config_file import ConfigError, ParseResult, parse_config
from gateway.models import PendingConfig

log = logging.getLogger(__name__)

Signature = tuple[int, int] | None
Ask = Callable[[str], str]
Say = Callable[[str], None]
_SIGNS = {"added": "+", "removed": "-", "changed": "~"}


@dataclass(frozen=True)
class Review:
    """A config file read and compared with the database: a diff, or the error."""

    path: str
    text: str = ""
    parsed: ParseResult | None = None
    diff: ConfigDiff = field(default_factory=ConfigDiff)
    error: ConfigError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.parsed is not None

    def lines_json(self) -> list[dict[str, str]]:
        return [line_json(line) for line in self.diff.lines]

    def describe(self) -> list[str]:
        """Lines to print on a terminal."""
        if self.error is not None:
            return [f"The config file {self.path} is invalid; nothing changed:", f"  {self.error}"]
        if self.diff.empty:
            return [f"The config file {self.path} matches the current configuration."]
        warnings = [f"note: {w}" for w in self.parsed.warnings] if self.parsed else []
        count = len(self.diff.lines)
        head = f"The config file {self.path} changed: {count} change{'s' * (count != 1)}"
        return [head, *warnings, *(show_line(line) for line in self.diff.lines)]


def line_json(line: DiffLine) -> dict[str, str]:
    return {"kind": line.kind, "subject": line.subject, "detail": line.detail}


def show_line(line: DiffLine) -> str:
    text = f"  {_SIGNS.get(line.kind, '?')} {line.subject}"
    return f"{text}: {line.detail}" if line.detail else text


def review(path: str | os.PathLike[str]) -> Review:
    """Parse and validate the file at `path` and diff it against the stored configuration."""
    where = os.fspath(path)
    try:
        with open(where, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        return Review(where, error=ConfigError("", f"cannot read {where}: {exc}"))
    try:
        parsed = parse_config(text)
    except ConfigError as exc:
        return Review(where, text, error=exc)
    return Review(where, text, parsed, diff_against_database(parsed.spec))


def store_pending(result: Review) -> PendingConfig:
    """Keep `result` for the dashboard, replacing any older pending file."""
    with transaction.atomic():
        PendingConfig.objects.all().delete()
        return PendingConfig.objects.create(
            text_encrypted=vault.encrypt(result.text),
            source=result.path,
            diff=result.lines_json(),
        )


def apply_pending(pending: PendingConfig) -> ApplyReport:
    """Apply a pending file and forget it, in one transaction; ConfigError changes nothing."""
    with transaction.atomic():
        report = apply_config(parse_config(pending.text).spec)
        PendingConfig.objects.filter(pk=pending.pk).delete()
    return report


def report_lines(report: ApplyReport) -> list[str]:
    if not report.changed:
        return ["No changes: the configuration already matched the file."]
    lines = ["Configuration applied:", *(f"  {line}" for line in report.lines)]
    for name, key in report.new_keys:
        lines.append(f"  new client key {name}: {key}  (shown once, not stored)")
    return lines


def signature(path: str) -> Signature:
    """What tells a changed file apart: (mtime in ns, size), or None when it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class ConfigWatcher:
    """Polls one config file; `step()` does one poll, `start()` runs it in a daemon thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        interactive: bool,
        ask: Ask = input,
        say: Say = print,
        interval: float = 1.0,
    ) -> None:
        self.path = os.fspath(path)
        self.interactive = interactive
        self.ask = ask
        self.say = say
        self.interval = interval
        self.stop_event = threading.Event()
        self.last: Signature = signature(self.path)

    def step(self) -> Review | None:
        """Look at the file once; on a change, review it and handle the result."""
        now = signature(self.path)
        if now == self.last:
            return None
        self.last = now
        if now is None:
            self.say(f"The config file {self.path} is gone; waiting for it to come back.")
            return None
        result = review(self.path)
        self.handle(result)
        return result

    def handle(self, result: Review) -> None:
        if not result.ok:
            for line in result.describe():
                self.say(line)
            log.warning("config file %s is invalid: %s", result.path, result.error)
            return
        if result.diff.empty:
            self.say(result.describe()[0])
            PendingConfig.objects.filter(source=result.path).delete()
            return
        if self.interactive:
            self._prompt(result)
            return
        store_pending(result)
        self.say(f"{result.describe()[0]}; review it in the dashboard.")
        log.warning("config file %s changed; awaiting review in the dashboard", result.path)

    def _prompt(self, result: Review) -> None:
        for line in result.describe():
            self.say(line)
        try:
            answer = self.ask("apply? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            self.say("Not applied.")
            return
        assert result.parsed is not None
        try:
            report = apply_config(result.parsed.spec)
        except ConfigError as exc:
            self.say(f"Not applied: {exc}")
            return
        for line in report_lines(report):
            self.say(line)

    def run(self) -> None:
        try:
            while not self.stop_event.wait(self.interval):
                close_old_connections()  # this thread's own connection, like a request's
                try:
                    self.step()
                except Exception:  # keep watching; a broken poll must not stop the server
                    log.exception("watching %s failed", self.path)
        finally:
            connections.close_all()  # connections are per thread: only this one's

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="config-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.stop_event.set()
