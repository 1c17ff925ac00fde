"""Synthetic signatures for thinking blocks made from another dialect's reasoning text.

Anthropic rejects a thinking block whose signature it did not issue, so blocks converted
from an OpenAI-dialect provider carry a recognisable marker and are dropped before a
request goes to an Anthropic provider.
"""

from __future__ import annotations

SYNTHETIC_SIGNATURE_PREFIX = "ap-synth:"


def synthetic_signature(provider: str) -> str:
    return f"{SYNTHETIC_SIGNATURE_PREFIX}{provider}"


def is_synthetic_signature(sig: str) -> bool:
    return sig.startswith(SYNTHETIC_SIGNATURE_PREFIX)
