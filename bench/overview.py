"""`python -m bench.overview`: the live overview's cost with 50 routes.

Renders the broadcaster's payload from a runtime holding 50 routes with an hour of
traffic in their metrics, and reports the payload size and the CPU one render takes
(the broadcaster renders once per second whatever the number of viewers).
"""

from __future__ import annotations

import os
import random
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")
os.environ.setdefault("DATA_DIR", "/tmp/anthropic-proxy-bench-overview")

import django

django.setup()

from dashboard.broadcaster import Broadcaster  # noqa: E402
from gateway.runtime import Runtime  # noqa: E402
from gateway.snapshot import ProviderConf, RouteConf, Snapshot  # noqa: E402

ROUTES, PROVIDERS = 50, 10


def populated_runtime() -> Runtime:
    runtime = Runtime()
    providers = [ProviderConf(f"provider-{i}", "anthropic", "http://x") for i in range(PROVIDERS)]
    routes = tuple(
        RouteConf(
            id=i, provider=providers[i % PROVIDERS], name=f"model-{i}", alias="m*", position=i
        )
        for i in range(ROUTES)
    )
    runtime.holder.current = Snapshot(version=1, routes=routes)
    clock = [time.time() - 3600]
    runtime.metrics._clock = lambda: clock[0]
    rng = random.Random(1)
    while clock[0] < time.time():  # an hour of traffic, ~2 requests/s spread over the routes
        route = routes[rng.randrange(ROUTES)]
        runtime.metrics.observe(
            route.key,
            ok=rng.random() > 0.02,
            ttft_ms=rng.uniform(200, 900),
            tps=rng.uniform(20, 120),
            output_tokens=300,
        )
        runtime.health.success(route.key, ttft=0.4, output_tokens=300, generation_seconds=5)
        clock[0] += 0.5
    runtime.metrics._clock = time.time
    return runtime


def main() -> None:
    broadcaster = Broadcaster(populated_runtime(), layer=None)
    html = broadcaster.render()
    rounds = 50
    started = time.process_time()
    for _ in range(rounds):
        broadcaster.render()
    cpu_ms = (time.process_time() - started) / rounds * 1000
    print("| routes | payload bytes | CPU per render (= per second of broadcasting) |")
    print("|--:|--:|--:|")
    print(f"| {ROUTES} | {len(html.encode()):,} | {cpu_ms:.1f} ms |")


if __name__ == "__main__":
    main()
