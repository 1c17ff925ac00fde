"""`manage.py fake_upstream`: the test-suite's fake provider, in the foreground.

For demos and `make bench`: a provider with known pace and no cost. Replays the recorded
fixtures, or generates a synthetic stream of ``--tokens`` one-token deltas.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tests.fakes.upstream import FakeUpstream, Script, Synthetic


def default_script(tokens: int | None, ttft: float, per_token: float) -> Script:
    """Synthetic when a token count is given; otherwise fixtures, paced the same way."""
    if tokens is not None:
        return Script(synthetic=Synthetic(tokens=tokens, ttft=ttft, per_token=per_token))
    return Script(first_event_delay=ttft, event_delay=per_token)


class Command(BaseCommand):
    help = "Run the fake upstream LLM provider (Anthropic or OpenAI dialect) on HOST:PORT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=9999)
        parser.add_argument("--dialect", choices=["anthropic", "openai"], default="anthropic")
        parser.add_argument(
            "--ttft", type=float, default=0.0, help="seconds before the first token (or event)"
        )
        parser.add_argument(
            "--per-token", type=float, default=0.0, help="seconds between tokens (or events)"
        )
        parser.add_argument(
            "--tokens", type=int, default=None, help="generate N tokens instead of fixtures"
        )
        parser.add_argument(
            "--uvloop", action="store_true", help="run on uvloop (cheaper under benchmark load)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        fake = FakeUpstream(dialect=options["dialect"], record=False)
        fake.script(None, default_script(options["tokens"], options["ttft"], options["per_token"]))
        host, port = options["host"], options["port"]
        kind = f"{options['tokens']} synthetic tokens" if options["tokens"] else "fixture replay"
        self.stdout.write(f"fake upstream ({options['dialect']}, {kind}) on http://{host}:{port}")
        serving = fake.serve_forever(host, port)
        try:
            if options["uvloop"]:
                import uvloop

                uvloop.run(serving)
            else:
                asyncio.run(serving)
        except KeyboardInterrupt:
            self.stdout.write("fake upstream stopped")
