"""`manage.py rotate_secrets_key`: a new data key for the provider secrets stored encrypted.

With the key file (DATA_DIR/secrets.key): a new key is put first in the file (the old one
stays, so nothing becomes unreadable whatever happens next), every stored secret is
re-encrypted with it in one transaction, and then the old key is dropped.

With PROXY_SECRETS_KEY, which this command cannot change: put the new key first
(`NEW,OLD`) on every host and restart them, run this command to re-encrypt, then remove
OLD. `--new-key` prints a fresh key for that.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from gateway import vault


def reencrypt_all() -> int:
    """Every encrypted value in the database, re-encrypted with the newest key; returns how
    many. One transaction: all or none."""
    from gateway.models import ConfigVersion, PendingConfig, Provider

    count = 0
    with transaction.atomic():
        for provider in Provider.objects.select_for_update():
            fields = []
            if provider.api_key_encrypted:
                provider.api_key_encrypted = vault.reencrypt(provider.api_key_encrypted)
                fields.append("api_key_encrypted")
            headers = (provider.options or {}).get("headers") or {}
            for name, value in headers.items():
                if value.startswith(vault.ENCRYPTED_PREFIX):
                    token = vault.reencrypt(value.removeprefix(vault.ENCRYPTED_PREFIX))
                    headers[name] = vault.ENCRYPTED_PREFIX + token
                    fields.append("options")
            if fields:
                provider.save(update_fields=sorted(set(fields)))
                count += 1
        for pending in PendingConfig.objects.select_for_update():
            pending.text_encrypted = vault.reencrypt(pending.text_encrypted)
            pending.save(update_fields=["text_encrypted"])
            count += 1
        if count:
            ConfigVersion.bump()  # every process rebuilds its snapshot with the new tokens
    return count


class Command(BaseCommand):
    help = "Re-encrypt the stored provider secrets with a new data key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="only print a freshly generated key (for PROXY_SECRETS_KEY) and exit",
        )

    def handle(self, *args: Any, new_key: bool, **options: Any) -> None:
        if new_key:
            self.stdout.write(Fernet.generate_key().decode())
            return
        env_keys = vault.keys_from_env()
        if env_keys:
            self._rotate_env(env_keys)
        else:
            self._rotate_file()

    def _rotate_env(self, keys: list[str]) -> None:
        if len(keys) < 2:
            raise CommandError(
                f"{vault.ENV_KEYS} holds one key. Put a new key first (NEW,OLD; "
                "`manage.py rotate_secrets_key --new-key` makes one), restart every host "
                "with it, then run this command again."
            )
        count = reencrypt_all()
        self.stdout.write(
            f"re-encrypted {count} stored secrets with the first key of {vault.ENV_KEYS}; "
            "now remove the older keys from it on every host and restart them."
        )

    def _rotate_file(self) -> None:
        old = vault.file_keys()
        new = Fernet.generate_key().decode()
        vault.write_key_file([new, *old])  # both readable until the re-encryption commits
        try:
            count = reencrypt_all()
        except Exception:
            self.stderr.write("re-encryption failed; the old key stays in the key file")
            raise
        vault.write_key_file([new])
        self.stdout.write(
            f"re-encrypted {count} stored secrets with a new data key; "
            f"the old key is gone from {vault.key_file()}. Configs exported before now "
            "carry tokens of the old key: export again."
        )
