"""`python -m bench.upstream_proc --port P`: the fake provider in a process of its own.

Its own process (and GIL) keeps the fake from stealing time from the load generator or
the proxy. The upstream models named in FAULTS misbehave (the failover figures); every
other model gets a synthetic reply of `--tokens` one-token deltas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

import uvloop

from tests.fakes.upstream import FakeUpstream, Script, Synthetic

# The fake keeps every request it saw (for tests); forget them now and then.
TRIM_SECONDS = 5.0
# Upstream model name -> how the fake fails it (bench/stack.py routes to these names).
FAULTS = {
    "fault-529": Script(status=529),  # an overloaded_error JSON reply, at once
    "fault-reset": Script(reset_before_reply=True),  # read the request, then TCP RST
    "fault-hang": Script(hang=True),  # read the request, never answer
}


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--per-token", type=float, default=0.0)
    return parser.parse_args(argv)


def _install(fake: FakeUpstream, default: Script) -> None:
    fake.script(None, default)
    for model, script in FAULTS.items():
        fake.script(model, script)


async def _trim_forever(fake: FakeUpstream, script: Script) -> None:
    """reset() also drops scripts; _install() right after, with no await in between."""
    while True:
        await asyncio.sleep(TRIM_SECONDS)
        fake.reset()
        _install(fake, script)


async def _serve(args: argparse.Namespace) -> None:
    synthetic = Synthetic(tokens=args.tokens, ttft=args.ttft, per_token=args.per_token)
    script = Script(synthetic=synthetic)
    fake = FakeUpstream()
    _install(fake, script)
    loop = asyncio.get_running_loop()
    server = asyncio.ensure_future(fake.serve_forever(args.host, args.port))
    trim = asyncio.ensure_future(_trim_forever(fake, script))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await server
    finally:
        trim.cancel()


def main(argv: list[str] | None = None) -> None:
    uvloop.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
