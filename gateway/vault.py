"""Provider secrets at rest: literal keys are encrypted with a data key kept in DATA_DIR.

`env.NAME` references are never stored encrypted; they are resolved when a request is
sent, so rotating a key in the environment needs no import. The data key can be given as
`PROXY_SECRETS_KEY` (several hosts must share it) or is generated once into
DATA_DIR/secrets.key.

Rotation (`manage.py rotate_secrets_key`): either source may hold several keys, newest
first (one per line in the file; comma-separated in the variable). The newest encrypts,
all of them decrypt, and the command re-encrypts every stored secret with the newest
before the older ones are dropped. The file is read again whenever it changes, so running
processes follow a rotation made by the command.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

ENV_PREFIX = "env."
ENCRYPTED_PREFIX = "encrypted:"
ENV_KEYS = "PROXY_SECRETS_KEY"


class SecretError(ValueError):
    """A stored or supplied secret cannot be read (wrong data key, bad token)."""


def key_file() -> Path:
    return Path(settings.DATA_DIR) / "secrets.key"


def keys_from_env() -> list[str]:
    raw = os.environ.get(ENV_KEYS, "")
    return [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]


def _create_key_file(path: Path) -> None:
    """Generate the first data key, whole or not at all (workers may race to do it)."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(Fernet.generate_key().decode() + "\n")
    try:
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        draft.unlink()


def write_key_file(keys: list[str]) -> None:
    """Replace the key file atomically (newest key first), readable by its owner only."""
    path = key_file()
    draft = path.with_name(f".{path.name}.new.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{key}\n" for key in keys))
        out.flush()
        os.fsync(out.fileno())
    os.replace(draft, path)
    _cache.clear()


def file_keys() -> list[str]:
    path = key_file()
    if not path.exists():
        _create_key_file(path)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


_cache: dict[object, MultiFernet] = {}


def _fernet() -> MultiFernet:
    env_keys = keys_from_env()
    if env_keys:
        stamp: object = ("env", tuple(env_keys))
    else:
        path = key_file()
        if not path.exists():
            _create_key_file(path)
        info = path.stat()
        stamp = ("file", info.st_mtime_ns, info.st_size, info.st_ino)
    found = _cache.get(stamp)
    if found is None:
        keys = env_keys or file_keys()
        found = MultiFernet([Fernet(key.encode()) for key in keys])
        _cache.clear()
        _cache[stamp] = found
    return found


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretError("cannot decrypt a stored secret with this data key") from exc


def reencrypt(token: str) -> str:
    """`token` encrypted with the newest data key (any known key may have made it)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except (InvalidToken, ValueError) as exc:
        raise SecretError("cannot decrypt a stored secret with this data key") from exc


REDACTED = "[redacted]"
_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "cookie", "password")
_SHORTEST_SECRET = 8  # shorter values are not worth hiding and would mangle ordinary text


def is_credential_header(name: str) -> bool:
    """A header whose value is a credential (by its name): masked, never shown back."""
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every occurrence of each secret replaced by REDACTED."""
    for secret in secrets:
        if len(secret) >= _SHORTEST_SECRET and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def seal_headers(headers: Mapping[str, str], stored: Mapping[str, str]) -> dict[str, str]:
    """Provider headers as stored: credential-like literal values encrypted
    (`encrypted:<token>`), keeping the stored token when the value has not changed, so a
    re-import changes nothing. `env.NAME` references and other headers stay as written."""
    sealed = {}
    for name, value in headers.items():
        if not is_credential_header(name) or value.startswith((ENV_PREFIX, ENCRYPTED_PREFIX)):
            sealed[name] = value
            continue
        kept = stored.get(name, "")
        if kept.startswith(ENCRYPTED_PREFIX) and _opens_to(kept, value):
            sealed[name] = kept
        else:
            sealed[name] = ENCRYPTED_PREFIX + encrypt(value)
    return sealed


def can_open(sealed: str) -> bool:
    try:
        decrypt(sealed.removeprefix(ENCRYPTED_PREFIX))
    except SecretError:
        return False
    return True


def _opens_to(sealed: str, value: str) -> bool:
    try:
        return decrypt(sealed.removeprefix(ENCRYPTED_PREFIX)) == value
    except SecretError:
        return False


@functools.lru_cache(maxsize=512)
def _opened(token: str, keys: object) -> str:
    return decrypt(token)


def open_value(value: str) -> str:
    """A stored header value as it is sent: decrypted, or resolved from the environment.
    Decryptions are cached (per data key), so the request path pays a dict lookup."""
    if value.startswith(ENCRYPTED_PREFIX):
        return _opened(value.removeprefix(ENCRYPTED_PREFIX), _fernet())
    if env_name(value):
        return resolve_env(value)
    return value


def env_name(reference: str) -> str | None:
    """`env.NAME` → `NAME`; anything else → None."""
    if reference.startswith(ENV_PREFIX) and len(reference) > len(ENV_PREFIX):
        return reference[len(ENV_PREFIX) :]
    return None


def resolve_env(reference: str) -> str:
    """The value of an `env.NAME` reference now; empty when the variable is unset."""
    name = env_name(reference)
    return os.environ.get(name, "") if name else ""
