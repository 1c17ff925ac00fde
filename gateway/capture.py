"""What a request and its answer looked like on the wire, kept only when asked for
(`serve --log-file`, LOG_BODIES): headers, and bodies up to a cap. Filled by the view
as the exchange goes; redacted when it is written out, never earlier in a log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.jsonl import capped, redact_headers

BODY_CAP = 64 * 1024


@dataclass
class Capture:
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytearray = field(default_factory=bytearray)
    cap: int = BODY_CAP

    @classmethod
    def of_request(cls, headers: dict[bytes, bytes], body: bytes) -> Capture:
        decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
        return cls(request_headers=decoded, request_body=body[: BODY_CAP + 1])

    def answer(self, data: bytes) -> None:
        """Keep the start of the answer, up to the cap (streams arrive in pieces)."""
        room = self.cap + 1 - len(self.response_body)
        if room > 0:
            self.response_body += data[:room]

    def as_record(self) -> dict[str, Any]:
        return {
            "request_headers": redact_headers(self.request_headers),
            "request_body": capped(self.request_body, self.cap),
            "response_headers": redact_headers(self.response_headers),
            "response_body": capped(bytes(self.response_body), self.cap),
        }
