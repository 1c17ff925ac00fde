"""Raw HTTP/1.1 over a socket, for requests no client library would send."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, raw: bytes, timeout: float = 10.0) -> Reply | None:
    """Send `raw` as is on a new connection; read the reply to the connection's end.
    None when the server closed without a word (acceptable only for broken framing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_reply(sock)


def read_reply(sock: socket.socket) -> Reply | None:
    """Everything the server sends until it closes, as one reply (None if nothing)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return Reply(status, headers, body)


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    chunks: list[int] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if chunks is None:
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    lines.append("transfer-encoding: chunked")
    framed, start = b"", 0
    for cut in [*sorted(set(chunks)), len(body)]:
        piece = body[start:cut]
        if piece:
            framed += b"%x\r\n%s\r\n" % (len(piece), piece)
        start = max(start, cut)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + framed + b"0\r\n\r\n"
