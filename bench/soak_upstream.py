"""`python -m bench.soak_upstream --port P --faults 0.05`: a fake provider that fails a
share of requests at random, in every way the fake knows, for the soak (bench/soak.py).

Before the first byte (the proxy fails over): 529, 500, 429 and 503 answers, a reset
before the reply, a hang (until the proxy's first-token timeout), a first event later
than that timeout. After the first bytes (the client sees an Anthropic `event: error`):
a reset mid-stream, a stall mid-stream (until the proxy's idle timeout). The rest get a
paced synthetic reply. The choice is seeded, so two soaks fail alike.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter

import uvloop

from bench import upstream_proc
from tests.fakes.upstream import FakeUpstream, Script, Synthetic

TRIM_SECONDS = 5.0  # the fake keeps every request it saw; forget them this often


def faults(synthetic: Synthetic, stall: float) -> dict[str, Script]:
    """Fault name -> how the fake answers; `stall` must exceed the proxy's timeouts."""
    return {
        "status_529": Script(status=529),
        "status_500": Script(status=500),
        "status_429": Script(status=429, headers={"retry-after": "0"}),
        "status_503": Script(status=503),
        "reset_before_reply": Script(reset_before_reply=True),
        "hang": Script(hang=True),
        "slow_first_event": Script(synthetic=synthetic, first_event_delay=stall),
        "reset_mid_stream": Script(synthetic=synthetic, reset_after_events=8),
        "stall_mid_stream": Script(synthetic=synthetic, hang_after_events=8),
    }


class Chaos:
    """Picks each request's script: a fault with probability `rate`, else the healthy one."""

    def __init__(self, healthy: Script, faults: dict[str, Script], rate: float, seed: int) -> None:
        self.healthy = healthy
        self.faults = faults
        self.names = sorted(faults)
        self.rate = rate
        self.random = random.Random(seed)
        self.counts: Counter[str] = Counter()

    def __call__(self, model: str | None) -> Script:
        if self.random.random() >= self.rate:
            self.counts["healthy"] += 1
            return self.healthy
        name = self.random.choice(self.names)
        self.counts[name] += 1
        return self.faults[name]


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--faults", type=float, default=0.05, help="share of requests failed")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft", type=float, default=0.3)
    parser.add_argument("--per-token", type=float, default=0.02)
    parser.add_argument("--stall", type=float, default=8.0, help="longer than proxy timeouts")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


async def _trim_forever(fake: FakeUpstream) -> None:
    while True:
        await asyncio.sleep(TRIM_SECONDS)
        fake.reset()  # the policy stays; only the record of requests is dropped


async def _serve(args: argparse.Namespace) -> None:
    synthetic = Synthetic(tokens=args.tokens, ttft=args.ttft, per_token=args.per_token)
    chaos = Chaos(
        Script(synthetic=synthetic),
        faults(synthetic, args.stall),
        args.faults,
        args.seed,
    )
    fake = FakeUpstream()
    fake.choose_scripts(chaos)
    try:
        await upstream_proc.serve(fake, "127.0.0.1", args.port, _trim_forever(fake))
    finally:
        print(dict(sorted(chaos.counts.items())), flush=True)  # the soak reads this line


def main(argv: list[str] | None = None) -> None:
    uvloop.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
