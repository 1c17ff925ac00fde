"""Provider secrets at rest: literal keys are encrypted with a key kept in DATA_DIR.

`env.NAME` references are never stored encrypted; they are resolved when a request is
sent, so rotating a key in the environment needs no import. The data key can be given as
`PROXY_SECRETS_KEY` (several hosts must share it) or is generated once into DATA_DIR.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

ENV_PREFIX = "env."
ENCRYPTED_PREFIX = "encrypted:"


class SecretError(ValueError):
    """A stored or supplied secret cannot be read (wrong data key, bad token)."""


@cache
def _fernet() -> Fernet:
    key = os.environ.get("PROXY_SECRETS_KEY", "").strip()
    if not key:
        key_file = Path(settings.DATA_DIR) / "secrets.key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(Fernet.generate_key())
        key = key_file.read_text().strip()
    return Fernet(key.encode())


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretError("cannot decrypt a stored secret with this data key") from exc


def env_name(reference: str) -> str | None:
    """`env.NAME` → `NAME`; anything else → None."""
    if reference.startswith(ENV_PREFIX) and len(reference) > len(ENV_PREFIX):
        return reference[len(ENV_PREFIX) :]
    return None


def resolve_env(reference: str) -> str:
    """The value of an `env.NAME` reference now; empty when the variable is unset."""
    name = env_name(reference)
    return os.environ.get(name, "") if name else ""
