"""The scenarios of `python -m bench`, by name, and how many requests each one gets.

A name is KIND-cN, N the number of concurrent connections. `nonstream` and `stream` ask
the fast fake (it answers at once) for a tiny request, so the proxy's own cost is all
there is to see; `realistic` streams from a second fake paced like a real model (TTFT
300 ms, 5 ms per token), where what matters is that the proxy adds little and keeps up,
its clients starting spread over one reply's length as independent users would; `burst`
is the same with every client starting at once (equal-length replies then keep them in
step: a burst of N requests every reply); `bigbody` sends the 55 KB Claude Code request,
so body parsing and conversion show.

Every (scenario, target) has a time budget, split over its rounds: a slow peer gets fewer
requests, never a longer run, so the whole bench stays bounded whatever it measures.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from bench.procs import ROOT
from bench.runner import Scenario
from bench.service import FAST, SLOW
from bench.stack import SLOW_PER_TOKEN, SLOW_TTFT, TOKENS

BIG_BODY = ROOT / "tests" / "fixtures" / "claude-code" / "main-request.json"
KINDS = ("nonstream", "stream", "realistic", "burst", "bigbody")
PACED = ("realistic", "burst")  # the kinds asking the paced fake
# realistic: the clients' first requests spread over one paced reply of the default length
STAGGER = SLOW_TTFT + (TOKENS - 1) * SLOW_PER_TOKEN
NAME = re.compile(rf"^({'|'.join(KINDS)})-c(\d+)$")
DEFAULT = (
    "nonstream-c1",
    "nonstream-c32",
    "nonstream-c128",
    "stream-c1",
    "stream-c32",
    "stream-c128",
    "realistic-c64",
    "burst-c64",
    "bigbody-c1",
)
MAX_CONCURRENCY = 512
WARMUP_MIN = 10  # warm-up requests per round, at least


@dataclass(frozen=True)
class Size:
    """How much of everything: a full run, `--quick`, or `--tiny` (the smoke test's)."""

    label: str
    single: int  # requests at c=1
    many: int  # requests at c>1, over all rounds
    per_connection: int  # realistic: requests per connection, over all rounds
    time_limit: float  # seconds of measured phase per (scenario, target), all rounds
    warmup_limit: float  # seconds of warm-up per round
    rounds: int  # interleaved rounds at c>1 (targets in a new order each round)


# The full run's budget keeps `make bench-peers` near 20 minutes: LiteLLM is cut short
# in most scenarios, the others finish their counts well within it.
FULL = Size("full", 500, 4000, 20, 16.0, 4.0, 4)
QUICK = Size("quick", 100, 500, 4, 6.0, 3.0, 1)
TINY = Size("tiny", 10, 40, 2, 5.0, 3.0, 1)


def body_streams(path: Path) -> bool:
    """The recorded body's own `stream` flag: the bigbody scenario keeps it."""
    return bool(json.loads(path.read_text()).get("stream"))


def scenario(name: str, size: Size) -> Scenario:
    """The Scenario for a name; ValueError with a readable message if the name is wrong."""
    match = NAME.match(name)
    if match is None:
        raise ValueError(f"scenario {name!r}: expected KIND-cN, KIND one of {', '.join(KINDS)}")
    kind, concurrency = match.group(1), int(match.group(2))
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"scenario {name!r}: concurrency must be 1..{MAX_CONCURRENCY}")
    if kind in PACED:
        total = size.per_connection * concurrency
    else:
        total = size.single if concurrency == 1 else size.many
    rounds = size.rounds if concurrency > 1 else 1
    per_round = max(1, total // rounds)
    # One request per connection opens them all; the services stay up across scenarios
    # and rounds, so they are warm already after the first. A paced request takes 0.6 s:
    # one round trip per connection is warm-up enough.
    warmup = concurrency if kind in PACED else max(WARMUP_MIN, concurrency)
    body = BIG_BODY if kind == "bigbody" else None
    return Scenario(
        name=name,
        stream=body_streams(body) if body else kind != "nonstream",
        concurrency=concurrency,
        requests=per_round,
        warmup=warmup,
        rounds=rounds,
        upstream=SLOW if kind in PACED else FAST,
        body_file=str(body) if body else None,
        time_limit=size.time_limit / rounds,
        warmup_limit=size.warmup_limit,
        stagger=STAGGER if kind == "realistic" else 0.0,
    )
