"""`python -m bench.streams_load --port P ...`: N concurrent SSE streams, in a process of its own.

Each stream has a connection of its own and is the only request on it: the streams are
opened over `--ramp` seconds (so the connect storm is over before anything is measured),
and they last long enough (the fake's `--tokens`, chosen by bench/streams.py) that all N
are open together for the whole measured window. One stream per connection, rather than
keep-alive with back-to-back requests, keeps exactly N streams open during the window,
makes the window free of request set-up work, and lets every stream finish, so a missing
`message_stop` is always seen.

The fake stamps each text delta with its CLOCK_MONOTONIC send time (" t=<seconds>"); the
delay of an event is its arrival (`time.monotonic()` in `data_received`) minus that stamp.
Reading is a raw `asyncio.Protocol` on uvloop, not an HTTP library and not even asyncio
streams: at 10^4-10^5 events per second a task wake-up per read would cost this process
more CPU than the relay costs the proxy, and the delays it measures would be its own.

Talks to the parent over stdio: ``ready`` after the warm-up; one line on stdin starts the
run; ``plateau <t>`` once every stream has received text (the window opens), ``end <t>``
when it closes, `--duration` seconds later or when the first stream ends if that comes
sooner; one JSON line once every stream has ended.

When the machine cannot keep up, the bench stays bounded and says so rather than wait:
the window opens anyway `--plateau-wait` seconds after the ramp (``plateau_partial``),
and streams still open `--run-limit` seconds after it closes are cut and reported as
``unfinished``: late, which is not an error a client would see.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import uvloop

STAMP = re.compile(rb'"text":" t=(\d+\.\d+)"')
BUCKET = 1e-5  # seconds: the delay histogram's resolution (10 us)
BUCKETS = 100_000  # up to 1 s; longer delays are kept one by one
CONNECT_TIMEOUT = 10.0
TICK = 0.1  # seconds between checks for idle streams and open-stream samples
STALL = 0.010  # an event later than this is a head-of-line stall


@dataclass(frozen=True)
class Spec:
    host: str
    port: int
    api_key: str
    model: str  # the route measured: bench* is Anthropic-dialect, oai* OpenAI-dialect
    warmup_model: str  # answered with a short reply
    warmup: int  # warm-up streams, 8 at a time
    streams: int
    ramp: float  # seconds over which the streams are opened
    duration: float  # seconds of the measured window
    idle_timeout: float  # a stream silent this long is cut and counted as a timeout
    plateau_wait: float  # seconds after the ramp to wait for every stream to stream
    run_limit: float  # seconds after the window closes for the last stream to end


@dataclass
class Delays:
    """A histogram of per-event delays; only events that arrive while `active` count."""

    active: bool = False
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    overflow: list[float] = field(default_factory=list)
    events: int = 0
    stalls: int = 0
    biggest: float = 0.0

    def add(self, now: float, stamps: list[bytes]) -> None:
        if not self.active:
            return
        counts = self.counts
        for raw in stamps:
            delay = now - float(raw)
            if delay < 0.0:  # the stamp is rounded to the microsecond
                delay = 0.0
            index = int(delay / BUCKET)
            if index < BUCKETS:
                counts[index] += 1
            else:
                self.overflow.append(delay)
            if delay > STALL:
                self.stalls += 1
            if delay > self.biggest:
                self.biggest = delay
        self.events += len(stamps)

    def quantile(self, q: float) -> float | None:
        """Seconds, to the bucket's upper edge; None without events."""
        if self.events == 0:
            return None
        rank = max(1, round(q * self.events))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return (index + 1) * BUCKET
        return sorted(self.overflow)[rank - seen - 1]

    def summary(self) -> dict[str, float | int | None]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 3)

        return {
            "events": self.events,
            "p50_ms": ms(self.quantile(0.50)),
            "p99_ms": ms(self.quantile(0.99)),
            "p999_ms": ms(self.quantile(0.999)),
            "max_ms": ms(self.biggest if self.events else None),
            "stalls": self.stalls,
        }


@dataclass
class Run:
    """Everything the streams share: delays, outcomes, and who is still open."""

    spec: Spec
    delays: Delays
    errors: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    # (stream number in start order, seconds from its start, connecting included, to text)
    ttfts: list[tuple[int, float]] = field(default_factory=list)
    started: int = 0  # streams started so far
    open: set[StreamClient] = field(default_factory=set)
    streaming: int = 0  # streams that have received text (or ended)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0  # streams started or about to be
    first_done: float | None = None  # when the first stream ended
    first_end: asyncio.Event = field(default_factory=asyncio.Event)  # set at first_done


class StreamClient(asyncio.Protocol):
    """One connection carrying one stream: reads the head, de-chunks, scans the events."""

    def __init__(self, run: Run, request: bytes, on_text: Callable[[], None]) -> None:
        self.run = run
        self.request = request
        self.on_text = on_text
        self.index = run.started
        run.started += 1
        self.created = time.monotonic()
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.status = 0
        self.chunked = False
        self.raw = bytearray()  # the body as received, not yet de-chunked
        self.events = bytearray()  # de-chunked, up to an incomplete event
        self.last_data = 0.0
        self.got_text = False
        self.saw_stop = False
        self.saw_error = False
        self.finished = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.run.open.add(self)
        self.last_data = time.monotonic()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = self.last_data = time.monotonic()
        if self.status == 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(bytes(self.head[:end]))
            data = bytes(self.head[end + 4 :])
            self.head.clear()
            if self.status != 200 or not self.chunked:
                self.finish(f"http_{self.status}" if self.status != 200 else "not_chunked")
                return
        self.raw += data
        self._dechunk(now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self.finish("reset_before_end" if exc else "eof_before_end")

    # parsing
    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        self.status = int(lines[0].split(b" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True

    def _dechunk(self, now: float) -> None:
        raw, pos, parts = self.raw, 0, []
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol].split(b";", 1)[0], 16)
            end = eol + 2 + size + 2
            if len(raw) < end:
                break
            if size == 0:
                self._events(now, b"".join(parts))
                self._end_of_body()
                return
            parts.append(bytes(raw[eol + 2 : end - 2]))
            pos = end
        del raw[:pos]
        if parts:
            self._events(now, b"".join(parts))

    def _events(self, now: float, payload: bytes) -> None:
        """Scan the complete events of `payload` (plus what an earlier read left over)."""
        if self.events:
            self.events += payload
            payload = bytes(self.events)
            self.events.clear()
        cut = payload.rfind(b"\n\n") + 2
        if cut < len(payload):
            self.events += payload[cut:]
            payload = payload[:cut]
        if not payload:
            return
        stamps = STAMP.findall(payload)
        if stamps:
            self.run.delays.add(now, stamps)
            if not self.got_text:
                self.got_text = True
                self.run.ttfts.append((self.index, now - self.created))
                self.on_text()
        if b"event: message_stop" in payload:
            self.saw_stop = True
        if b"event: error" in payload:
            self.saw_error = True

    def _end_of_body(self) -> None:
        if self.saw_error:
            self.finish("event_error")
        elif not self.saw_stop:
            self.finish("missing_message_stop")
        else:
            self.finish(None)

    # endings
    def finish(self, error: str | None) -> None:
        """Count the outcome once and close the connection (one stream per connection)."""
        if self.finished:
            return
        self.finished = True
        self.run.first_done = self.run.first_done or time.monotonic()
        self.run.first_end.set()
        if error is None:
            self.run.ok += 1
        else:
            self.run.errors[error] += 1
        if not self.got_text:
            self.got_text = True
            self.on_text()  # it will not stream: the plateau must not wait for it
        self.run.open.discard(self)
        if self.transport is not None:
            self.transport.close()
        if self.run.ok + sum(self.run.errors.values()) >= self.run.expected:
            self.run.done.set()

    def abort(self, error: str | None) -> None:
        """Cut the stream; `error` None: not counted at all (the caller counts it)."""
        if error is None:
            self.finished = True
            self.run.open.discard(self)
        else:
            self.finish(error)
        if self.transport is not None:
            self.transport.abort()


def build_request(spec: Spec, model: str) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "max_tokens": 4096,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
    ).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\n"
        f"host: {spec.host}:{spec.port}\r\n"
        f"x-api-key: {spec.api_key}\r\n"
        f"anthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def open_stream(run: Run, request: bytes, on_text: Callable[[], None]) -> None:
    """Connect and send; a failure to connect is counted as that stream's outcome."""
    loop = asyncio.get_running_loop()
    client = StreamClient(run, request, on_text)
    try:
        connecting = loop.create_connection(lambda: client, run.spec.host, run.spec.port)
        await asyncio.wait_for(connecting, CONNECT_TIMEOUT)
    except TimeoutError:
        client.finish("connect_timeout")
    except OSError as exc:
        client.finish(f"connect_{type(exc).__name__}")


async def watch_idle(run: Run, samples: list[int]) -> None:
    """Cut streams silent for longer than the idle timeout; sample how many are open."""
    while True:
        await asyncio.sleep(TICK)
        now = time.monotonic()
        for client in list(run.open):
            if now - client.last_data > run.spec.idle_timeout:
                client.abort("timeout_idle")
        if run.delays.active:
            samples.append(len(run.open))


async def warm_up(spec: Spec) -> dict[str, int]:
    """Short streams on the warm-up route, 8 at a time: the proxy's code paths and pools
    are warm before its idle memory is read. Returns the warm-up's errors."""
    run = Run(spec, Delays())
    request = build_request(spec, spec.warmup_model)
    for first in range(0, spec.warmup, 8):
        batch = min(8, spec.warmup - first)
        run.expected += batch
        run.done.clear()
        for _ in range(batch):
            await open_stream(run, request, lambda: None)
        async with asyncio.timeout(30):
            await run.done.wait()
    return dict(run.errors)


async def ramp_up(run: Run, plateau: asyncio.Event) -> None:
    """Open the streams evenly over the ramp; the event is set once all of them stream."""
    spec, loop = run.spec, asyncio.get_running_loop()

    def on_text() -> None:
        run.streaming += 1
        if run.streaming >= spec.streams:
            plateau.set()

    request = build_request(spec, spec.model)
    started = time.monotonic()
    openers = set()  # the loop keeps only weak references to tasks
    for i in range(spec.streams):
        delay = started + spec.ramp * i / spec.streams - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(open_stream(run, request, on_text))
        openers.add(task)
        task.add_done_callback(openers.discard)


async def hold_window(run: Run) -> None:
    """`duration` seconds, or less if a stream ends first: N streams stay open throughout.
    If one had ended before the window opened (the ramp was too slow for N to be open
    together) the window lasts its full duration anyway, and `open_min` shows the gap."""
    if run.first_end.is_set():
        await asyncio.sleep(run.spec.duration)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(run.spec.duration):
            await run.first_end.wait()


async def drain(run: Run) -> int:
    """Wait for every stream to end; cut those still open at the run limit (returned)."""
    try:
        async with asyncio.timeout(run.spec.run_limit):
            await run.done.wait()
        return 0
    except TimeoutError:
        late = list(run.open)
        for client in late:
            client.abort(None)
        return len(late)


async def measure(spec: Spec) -> dict[str, object]:
    """Ramp up, open the window once every stream streams, close it `duration` later,
    then wait for every stream to end (or cut the stragglers at `run_limit`)."""
    run = Run(spec, Delays(), expected=spec.streams)
    plateau = asyncio.Event()
    samples: list[int] = []
    watcher = asyncio.ensure_future(watch_idle(run, samples))
    cpu_before, started = time.process_time(), time.monotonic()
    await ramp_up(run, plateau)
    ramped = time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(spec.plateau_wait):
            await plateau.wait()
    opened = time.monotonic()
    streaming_at_open = min(run.streaming, spec.streams)
    run.delays.active = True
    print(f"plateau {opened:.6f}", flush=True)
    await hold_window(run)
    run.delays.active = False
    closed = time.monotonic()
    print(f"end {closed:.6f}", flush=True)
    open_at_end = len(run.open)
    unfinished = await drain(run)
    watcher.cancel()
    ttfts = sorted(ttft for _, ttft in run.ttfts)

    def since(at: float | None) -> float | None:
        return None if at is None else round(at - started, 3)

    return {
        "streams": spec.streams,
        "ok": run.ok,
        "errors": sum(run.errors.values()),
        "error_kinds": dict(run.errors),
        "unfinished": unfinished,
        "ramp_s": since(ramped),
        "plateau_after_s": since(opened),
        "plateau_partial": streaming_at_open < spec.streams,
        "streaming_at_open": streaming_at_open,
        "first_done_s": since(run.first_done),
        "window_s": round(closed - opened, 3),
        "all_done_s": since(time.monotonic()),
        "open_min": min(samples, default=len(run.open)),
        "open_mean": round(sum(samples) / len(samples), 1) if samples else float(len(run.open)),
        "open_at_end": open_at_end,
        "delay": run.delays.summary(),
        "ttft_p50_ms": round(ttfts[len(ttfts) // 2] * 1000, 1) if ttfts else None,
        "ttft_p90_ms": round(ttfts[len(ttfts) * 9 // 10] * 1000, 1) if ttfts else None,
        "ttft_max_ms": round(ttfts[-1] * 1000, 1) if ttfts else None,
        "ttft_by_start_decile_ms": ttft_deciles(run.ttfts),
        "client_cpu": round(time.process_time() - cpu_before, 3),
    }


def ttft_deciles(ttfts: list[tuple[int, float]]) -> list[float]:
    """Mean TTFT (ms) of each tenth of the streams in start order: a queue that builds up
    during the ramp shows as a rising line."""
    ordered = [ttft for _, ttft in sorted(ttfts)]
    cuts = [len(ordered) * i // 10 for i in range(11)]
    parts = [ordered[a:b] for a, b in itertools.pairwise(cuts)]
    return [round(sum(part) / len(part) * 1000, 1) for part in parts if part]


async def _main(spec: Spec) -> dict[str, object]:
    warmup_errors = await warm_up(spec)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    result = await measure(spec)
    return {**result, "warmup_errors": warmup_errors}


def _parse_args(argv: list[str] | None) -> Spec:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="sk-bench-client-key-0123456789")
    parser.add_argument("--model", default="bench-1")
    parser.add_argument("--warmup-model", default="warm-a-1")
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--ramp", type=float, default=1.5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    parser.add_argument("--plateau-wait", type=float, default=30.0)
    parser.add_argument("--run-limit", type=float, default=10.0)
    a = parser.parse_args(argv)
    return Spec(
        a.host,
        a.port,
        a.api_key,
        a.model,
        a.warmup_model,
        a.warmup,
        a.streams,
        a.ramp,
        a.duration,
        a.idle_timeout,
        a.plateau_wait,
        a.run_limit,
    )


def main(argv: list[str] | None = None) -> None:
    result = uvloop.run(_main(_parse_args(argv)))
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
