"""`python -m bench.upstream_proc --port P`: the fake provider in a process of its own.

Its own process (and GIL) keeps the fake from stealing time from the load generator or
the proxy. The upstream models named in FAULTS misbehave (the failover figures); every
other model gets a synthetic reply of `--tokens` one-token deltas. `--stamp` puts each
streamed delta's send time in its text (bench/streams.py measures per-event delay with
it); `--warmup-model NAME` answers that model with a short reply, for warm-ups that
should not wait for the long one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Coroutine
from typing import Any

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
WARMUP_TOKENS = 8
# asyncio listens with a backlog of 100: a thousand connections opened within a second or
# two by a busy proxy overflow it, and the dropped handshakes come back as 1-3 s connect
# delays and resets that a real provider would not cause. The kernel caps it (somaxconn).
BACKLOG = 4096


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft", type=float, default=0.0)
    parser.add_argument("--per-token", type=float, default=0.0)
    parser.add_argument("--stamp", action="store_true", help="deltas carry their send time")
    parser.add_argument("--warmup-model", default=None, help="answered with a short reply")
    return parser.parse_args(argv)


def _scripts(args: argparse.Namespace) -> dict[str | None, Script]:
    """Upstream model -> its script; None is every other model."""
    synthetic = Synthetic(
        tokens=args.tokens, ttft=args.ttft, per_token=args.per_token, stamp=args.stamp
    )
    scripts: dict[str | None, Script] = {None: Script(synthetic=synthetic), **FAULTS}
    if args.warmup_model:
        short = Synthetic(tokens=WARMUP_TOKENS, stamp=args.stamp)
        scripts[args.warmup_model] = Script(synthetic=short)
    return scripts


def _install(fake: FakeUpstream, scripts: dict[str | None, Script]) -> None:
    for model, script in scripts.items():
        fake.script(model, script)


async def _trim_forever(fake: FakeUpstream, scripts: dict[str | None, Script]) -> None:
    """reset() also drops scripts; _install() right after, with no await in between."""
    while True:
        await asyncio.sleep(TRIM_SECONDS)
        fake.reset()
        _install(fake, scripts)


def _widen_backlog(port: int) -> None:
    """Listen again, with BACKLOG, on this process's listening socket(s) on `port`.

    FakeUpstream does not expose its server, so the socket is found among the process's
    own descriptors; listen() on a duplicate changes the shared socket."""
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError, ValueError):
            dup = socket.socket(fileno=os.dup(int(name)))
            with dup:
                listening = dup.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                if listening and dup.getsockname()[1] == port:
                    dup.listen(BACKLOG)


async def serve(
    fake: FakeUpstream, host: str, port: int, housekeeping: Coroutine[Any, Any, None]
) -> None:
    """Serve `fake` until SIGTERM or SIGINT, with `housekeeping` running beside it (it is
    cancelled at the end); the listen backlog is widened for connection storms."""
    loop = asyncio.get_running_loop()
    server = asyncio.ensure_future(fake.serve_forever(host, port))
    chores = asyncio.ensure_future(housekeeping)
    if await fake.wait_for_async(lambda: bool(fake.url), timeout=10.0):
        _widen_backlog(port)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await server
    finally:
        chores.cancel()


async def _serve(args: argparse.Namespace) -> None:
    scripts = _scripts(args)
    fake = FakeUpstream()
    _install(fake, scripts)
    await serve(fake, args.host, args.port, _trim_forever(fake, scripts))


def main(argv: list[str] | None = None) -> None:
    uvloop.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
