"""Token usage in Anthropic's terms, read from the many shapes of OpenAI-dialect usage.

Anthropic counts `input_tokens` WITHOUT cache reads and cache writes; OpenAI's
`prompt_tokens` includes both, so they are subtracted here, once, for every path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_openai(raw: Any) -> Usage | None:
    """The usage an OpenAI-dialect body reports, or None when it reports none.

    Cache reads: `prompt_tokens_details.cached_tokens` (OpenAI, OpenRouter) or DeepSeek's
    `prompt_cache_hit_tokens`; cache writes: OpenRouter's `cache_write_tokens`.
    """
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = max(_count(details.get("cached_tokens")), _count(raw.get("prompt_cache_hit_tokens")))
    written = _count(details.get("cache_write_tokens"))
    prompt = _count(raw.get("prompt_tokens"))
    return Usage(
        input_tokens=max(prompt - cached - written, 0),
        output_tokens=_count(raw.get("completion_tokens")),
        cache_read_tokens=cached,
        cache_creation_tokens=written,
    )


def usage_in_chunk(chunk: Mapping[str, Any]) -> Usage | None:
    """Top-level `usage`, or Groq's `x_groq.usage` when a chunk carries only that."""
    found = usage_from_openai(chunk.get("usage"))
    if found is None:
        groq = chunk.get("x_groq")
        if isinstance(groq, dict):
            found = usage_from_openai(groq.get("usage"))
    return found


def anthropic_usage(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": usage.output_tokens,
    }
