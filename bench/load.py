"""`python -m bench.load --port P ...`: one load run, in a process (and GIL) of its own.

Raw HTTP/1.1 over asyncio streams on uvloop, one keep-alive connection per worker: an
HTTP client library would cost more CPU per request than the proxy under test on a
2-core machine. Talks to the parent over stdio: prints ``ready`` after the warm-up,
waits for one line on stdin, runs the measured phase, prints one JSON line.

Besides latency it notes, per stream, when the first content event arrived (TTFT: a peer
may send message_start at once and the first token much later, so the first byte is not
the first token) and how many SSE events came (CPU per event is the streaming cost).
`--body-file` sends a recorded request (the 55 KB Claude Code one) instead of a tiny one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

BODY_TEMPLATE = {
    "model": "bench-1",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
FIRST_TOKEN = b"content_block_delta"  # the first event that carries generated content
EVENT = b"event: "


@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    api_key: str
    stream: bool
    concurrency: int
    requests: int
    warmup: int
    time_limit: float  # seconds for the measured phase; stop issuing requests after it
    model: str = "bench-1"  # which route: bench* is Anthropic-dialect, oai* OpenAI-dialect
    warmup_model: str | None = None  # the warm-up's model, when not `model`
    body_file: str | None = None  # a recorded request body; its `model` is replaced
    warmup_time_limit: float | None = None  # seconds for the warm-up; default time_limit
    # Seconds over which the connections' first measured requests are spread evenly, so
    # that equal-length replies do not keep every client in step (0: all start at once).
    stagger: float = 0.0


@dataclass
class Tally:
    """What one phase saw; latencies and TTFBs in milliseconds, successes only."""

    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)  # streams: first content event
    events: int = 0  # SSE events in the successful stream replies
    errors: Counter[str] = field(default_factory=Counter)
    remaining: int = 0
    deadline: float = 0.0

    def take(self) -> bool:
        """Claim the next request of the phase, if any is left and time remains."""
        if self.remaining <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.remaining -= 1
        return True


class BadResponse(Exception):
    """A response that arrived whole but is not the success the scenario expects."""


def base_payload(spec: LoadSpec) -> dict[str, Any]:
    """The request body before its model is set: the recorded one, keeping its own
    `stream` flag (the parent reads it too), or the tiny template."""
    if spec.body_file is None:
        return {**BODY_TEMPLATE, "stream": spec.stream}
    payload = json.loads(Path(spec.body_file).read_text())
    if not isinstance(payload, dict):
        raise SystemExit(f"{spec.body_file}: not a JSON object")
    return payload


def build_request(spec: LoadSpec, model: str | None = None) -> bytes:
    payload = {**base_payload(spec), "model": model or spec.model}
    body = json.dumps(payload).encode()
    head = (
        f"POST /v1/messages HTTP/1.1\r\n"
        f"host: {spec.host}:{spec.port}\r\n"
        f"x-api-key: {spec.api_key}\r\n"
        f"anthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


class ChunkedBody:
    """An incremental chunked-transfer decoder; one buffer scan per read, not per chunk."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0
        self.parts: list[bytes] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while not self.done:
            eol = self.buf.find(b"\r\n", self.pos)
            if eol < 0:
                return
            size = int(self.buf[self.pos : eol].split(b";", 1)[0], 16)
            end = eol + 2 + size + 2
            if len(self.buf) < end:
                return
            if size == 0:
                # No trailers expected: the last chunk is "0\r\n\r\n".
                self.done = True
                return
            self.parts.append(bytes(self.buf[eol + 2 : end - 2]))
            self.pos = end


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, float, float]:
    """The de-chunked body, when its first byte arrived and when the first content event
    did (0.0 if none). The raw buffer is searched once, from where the last search ended."""
    body = ChunkedBody()
    first = token = 0.0
    searched = 0
    while not body.done:
        data = await reader.read(65536)
        if not data:
            raise asyncio.IncompleteReadError(bytes(body.buf), None)
        now = time.perf_counter()
        first = first or now
        body.feed(data)
        if not token:
            if body.buf.find(FIRST_TOKEN, max(0, searched - len(FIRST_TOKEN))) >= 0:
                token = now
            searched = len(body.buf)
    return b"".join(body.parts), first, token


async def read_sized(reader: asyncio.StreamReader, length: int) -> tuple[bytes, float]:
    """A content-length body and when its first byte arrived."""
    if length == 0:
        return b"", time.perf_counter()
    head = await reader.read(length)
    if not head:
        raise asyncio.IncompleteReadError(b"", length)
    first = time.perf_counter()
    rest = await reader.readexactly(length - len(head)) if len(head) < length else b""
    return head + rest, first


def check(status: int, body: bytes, stream: bool) -> None:
    if status != 200:
        raise BadResponse(f"http_{status}")
    if stream:
        if b"event: error" in body:
            raise BadResponse("stream_error_event")
        if b"event: message_stop" not in body:
            raise BadResponse("stream_incomplete")
    elif b"end_turn" not in body:
        raise BadResponse("bad_body")


@dataclass(frozen=True)
class Exchange:
    """One successful request: times in ms from just before the write."""

    latency: float
    ttfb: float
    ttft: float | None = None  # streams only: the first content event
    events: int = 0  # streams only: SSE events in the reply


class Connection:
    """One keep-alive connection, reopened after any failure."""

    def __init__(self, spec: LoadSpec, request: bytes) -> None:
        self.spec = spec
        self.request = request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            opening = asyncio.open_connection(self.spec.host, self.spec.port)
            self.reader, self.writer = await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def exchange(self) -> Exchange:
        """One request, timed from just before the write."""
        reader, writer = await self._open()
        started = time.perf_counter()
        writer.write(self.request)
        async with asyncio.timeout(READ_TIMEOUT):
            status, headers = await read_head(reader)
            if b"chunked" in headers.get(b"transfer-encoding", b""):
                body, first, token = await read_chunked(reader)
            else:
                length = int(headers.get(b"content-length", 0))
                body, first = await read_sized(reader, length)
                token = first if FIRST_TOKEN in body else 0.0
        ended = time.perf_counter()
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        check(status, body, self.spec.stream)
        if not self.spec.stream:
            return Exchange((ended - started) * 1000, (first - started) * 1000)
        ttft = (token - started) * 1000 if token else None
        return Exchange((ended - started) * 1000, (first - started) * 1000, ttft, body.count(EVENT))


async def worker(conn: Connection, tally: Tally, delay: float = 0.0) -> None:
    if delay:
        await asyncio.sleep(delay)
    while tally.take():
        try:
            done = await conn.exchange()
        except BadResponse as exc:
            tally.errors[str(exc)] += 1
            continue
        except (
            OSError,
            EOFError,
            TimeoutError,
            ValueError,
            IndexError,
            asyncio.LimitOverrunError,
        ) as exc:
            tally.errors[type(exc).__name__] += 1
            conn.close()
            await asyncio.sleep(0.01)  # do not spin on a server that refuses
            continue
        tally.latencies.append(done.latency)
        tally.ttfbs.append(done.ttfb)
        if done.ttft is not None:
            tally.ttfts.append(done.ttft)
        tally.events += done.events


async def run_phase(
    conns: list[Connection], count: int, limit: float, stagger: float = 0.0
) -> tuple[Tally, float]:
    """Run `count` requests over `conns`; the seconds returned leave out the ramp (the
    last connection's start delay): with back-to-back requests of equal length, requests
    over that time is the steady rate, as if every client had been going all along."""
    started = time.perf_counter()
    tally = Tally(remaining=count, deadline=started + limit)
    step = stagger / len(conns)
    await asyncio.gather(*(worker(conn, tally, n * step) for n, conn in enumerate(conns)))
    return tally, time.perf_counter() - started - step * (len(conns) - 1)


def _result(tally: Tally, elapsed: float, spec: LoadSpec, cpu: float) -> dict[str, object]:
    done = len(tally.latencies) + sum(tally.errors.values())
    return {
        "requests": done,
        "ok": len(tally.latencies),
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "elapsed": elapsed,
        "truncated": done < spec.requests,
        "client_cpu": cpu,
        "events": tally.events,
        "latencies": [round(x, 3) for x in tally.latencies],
        "ttfbs": [round(x, 3) for x in tally.ttfbs],
        "ttfts": [round(x, 3) for x in tally.ttfts],
    }


async def _main(spec: LoadSpec) -> dict[str, object]:
    request = build_request(spec)
    warmup = build_request(spec, spec.warmup_model)
    conns = [Connection(spec, warmup) for _ in range(spec.concurrency)]
    try:
        warmup_limit = spec.warmup_time_limit or spec.time_limit
        await run_phase(conns, spec.warmup, warmup_limit)
        for conn in conns:
            conn.request = request
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        cpu_before = time.process_time()
        tally, elapsed = await run_phase(conns, spec.requests, spec.time_limit, spec.stagger)
        return _result(tally, elapsed, spec, time.process_time() - cpu_before)
    finally:
        for conn in conns:
            conn.close()


def _parse_args(argv: list[str] | None) -> LoadSpec:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="sk-bench-client-key-0123456789")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--model", default="bench-1")
    parser.add_argument("--warmup-model", default=None, help="default: --model")
    parser.add_argument("--body-file", default=None, help="a JSON request body to send")
    parser.add_argument("--warmup-time-limit", type=float, default=None)
    parser.add_argument(
        "--stagger", type=float, default=0.0, help="seconds over which connections start"
    )
    args = parser.parse_args(argv)
    spec = LoadSpec(**{k.replace("-", "_"): v for k, v in vars(args).items()})
    if spec.body_file is not None:  # the recorded body says whether it streams
        spec = dataclasses.replace(spec, stream=bool(base_payload(spec).get("stream")))
    return spec


def main(argv: list[str] | None = None) -> None:
    result = uvloop.run(_main(_parse_args(argv)))
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
