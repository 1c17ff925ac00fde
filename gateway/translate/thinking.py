"""Signatures for thinking blocks the gateway makes up from an OpenAI provider's reasoning.

Anthropic signs its thinking blocks; a block built from `reasoning_content` has no real
signature, so it gets a recognisable fake one. When the conversation later goes to an
Anthropic provider, `anthropic_body.adapt` removes these blocks, which Anthropic would reject.
"""

from __future__ import annotations

SYNTHETIC_SIGNATURE_PREFIX = "ap-synth:"


def synthetic_signature(provider: str) -> str:
    """The signature for a thinking block synthesised from `provider`'s reasoning output."""
    return f"{SYNTHETIC_SIGNATURE_PREFIX}{provider}"


def is_synthetic_signature(sig: object) -> bool:
    return isinstance(sig, str) and sig.startswith(SYNTHETIC_SIGNATURE_PREFIX)
