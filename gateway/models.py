"""What the gateway stores: routing configuration, client keys and the request log.

The request path never reads these tables: `snapshot.py` copies the configuration into an
immutable in-memory table, and `logbook.py` writes the log in batches off the path.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models, transaction
from django.utils import timezone

from gateway.limits import KeyLimits


class ConfigVersion(models.Model):
    """One row whose number goes up on every configuration change.

    Each process polls it (once a second) and rebuilds its snapshot when it moves, so
    several processes behind a load balancer converge within a second; with REDIS_URL the
    new number is also announced once the change commits, and they converge at once.
    """

    version = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    @classmethod
    def current(cls) -> int:
        row = cls.objects.filter(pk=1).values_list("version", flat=True).first()
        return row or 0

    @classmethod
    def bump(cls) -> int:
        with transaction.atomic():
            row, _ = cls.objects.select_for_update().get_or_create(pk=1)
            row.version += 1
            row.updated_at = timezone.now()
            row.save(update_fields=["version", "updated_at"])
            version = row.version
            transaction.on_commit(lambda: _announce(version))
            return version


def _announce(version: int) -> None:
    from gateway.config_sync import announce

    announce(version)


class Provider(models.Model):
    class Dialect(models.TextChoices):
        ANTHROPIC = "anthropic"
        OPENAI = "openai"

    name = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=20, choices=Dialect.choices, default=Dialect.ANTHROPIC)
    endpoint = models.URLField(max_length=500)
    # Exactly one of these holds the provider's key: an `env.NAME` reference resolved at
    # request time, or a literal key encrypted with the data-dir key (see secrets.py).
    api_key_env = models.CharField(max_length=200, blank=True)
    api_key_encrypted = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    # Provider-specific options from the YAML (e.g. connectTimeout), validated on import.
    options = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class ModelRoute(models.Model):
    """One way to serve a requested model: an upstream model name at a provider."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="routes")
    name = models.CharField(max_length=200, help_text="The model name sent upstream.")
    alias = models.CharField(max_length=200, blank=True, help_text="Glob with * wildcards.")
    context = models.PositiveIntegerField(default=0, help_text="Context window in tokens.")
    weight = models.IntegerField(default=1)
    thinking = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    # Per-model overrides from the YAML (firstTokenTimeout, idleTimeout, hedgeAfter, ...).
    options = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "name", "alias"], name="unique_route_per_provider"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name} ({self.alias or self.name})"


class RoutingSettings(models.Model):
    """The `routing:`, `retry:` and retention sections of the config file, one row."""

    routing = models.JSONField(default=dict, blank=True)
    retry = models.JSONField(default=dict, blank=True)
    data_retention_days = models.PositiveIntegerField(default=30)

    @classmethod
    def load(cls) -> RoutingSettings:
        row, _ = cls.objects.get_or_create(pk=1)
        return row


class ApiKey(models.Model):
    """A client key. Only a keyed hash and a short prefix are stored; the key is shown once."""

    class Source(models.TextChoices):
        CONFIG = "config"
        ADMIN = "admin"
        CLI = "cli"

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # For `env.NAME` keys from the config file: the key is read from the environment when
    # the snapshot is built, and never stored.
    env_ref = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ADMIN)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Limits (gateway/limits.py); empty means none.
    max_concurrent = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests in progress at once."
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_day = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Input + output tokens per UTC day."
    )
    tokens_per_month = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Input + output tokens per UTC calendar month."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(source="config"),
                name="unique_config_key_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)" if self.prefix else self.name

    @property
    def limits(self) -> KeyLimits:
        return KeyLimits(
            concurrent=self.max_concurrent,
            requests_per_minute=self.requests_per_minute,
            tokens_per_day=self.tokens_per_day,
            tokens_per_month=self.tokens_per_month,
        )

    @limits.setter
    def limits(self, limits: KeyLimits) -> None:
        self.max_concurrent = limits.concurrent
        self.requests_per_minute = limits.requests_per_minute
        self.tokens_per_day = limits.tokens_per_day
        self.tokens_per_month = limits.tokens_per_month

    LIMIT_FIELDS = ("max_concurrent", "requests_per_minute", "tokens_per_day", "tokens_per_month")

    @classmethod
    def issue(
        cls,
        name: str,
        source: str,
        expires_at: datetime | None = None,
        limits: KeyLimits | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key: only its hash and prefix are stored, and the configuration version
        moves so running processes accept it within a second. Returns the plaintext once."""
        from gateway.auth import display_prefix, hash_key, new_key

        plaintext = new_key()
        with transaction.atomic():
            row = cls.objects.create(
                name=name,
                prefix=display_prefix(plaintext),
                key_hash=hash_key(plaintext),
                source=source,
                expires_at=expires_at,
                max_concurrent=limits.concurrent if limits else None,
                requests_per_minute=limits.requests_per_minute if limits else None,
                tokens_per_day=limits.tokens_per_day if limits else None,
                tokens_per_month=limits.tokens_per_month if limits else None,
            )
            ConfigVersion.bump()
        return row, plaintext


class RequestLog(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        CLIENT_CANCELLED = "client_cancelled"

    created_at = models.DateTimeField(default=timezone.now)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL)
    api_key_name = models.CharField(max_length=200, blank=True)
    path = models.CharField(max_length=100, default="/v1/messages")
    requested_model = models.CharField(max_length=200, blank=True)
    stream = models.BooleanField(default=False)
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.OK)
    error_type = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_creation_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    tps = models.FloatField(null=True, blank=True)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    user_agent = models.CharField(max_length=300, blank=True)
    skipped = models.JSONField(default=list, blank=True)
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["-created_at"], name="log_created"),
            models.Index(fields=["requested_model", "-created_at"], name="log_model"),
            models.Index(fields=["provider", "-created_at"], name="log_provider"),
            models.Index(fields=["api_key", "-created_at"], name="log_key"),
            models.Index(fields=["status", "-created_at"], name="log_status"),
            models.Index(fields=["outcome", "-created_at"], name="log_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.requested_model} {self.status}"


class Attempt(models.Model):
    class Outcome(models.TextChoices):
        WON = "won"
        FAILED = "failed"
        RETRIED = "retried"
        CANCELLED = "cancelled"
        HEDGE_LOST = "hedge_lost"

    request = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="attempts")
    seq = models.PositiveSmallIntegerField()
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    started_ms = models.FloatField(default=0, help_text="Start, ms after the request arrived.")
    ttft_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    status = models.PositiveSmallIntegerField(default=0)
    error_kind = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)

    class Meta:
        ordering = ["request", "seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.provider}/{self.model} {self.outcome}"


class DailyRouteStats(models.Model):
    """What retention keeps of pruned request-log rows: per day and route, the sums."""

    day = models.DateField()
    provider = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_creation_tokens = models.PositiveBigIntegerField(default=0)
    ttft_ms_sum = models.FloatField(default=0)
    ttft_count = models.PositiveIntegerField(default=0)
    duration_ms_sum = models.FloatField(default=0)

    class Meta:
        ordering = ["-day", "provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["day", "provider", "model"], name="one_row_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.provider}/{self.model}: {self.requests}"


class PendingConfig(models.Model):
    """A changed config file seen by `serve --watch`, waiting for review in the dashboard.

    Only the newest row matters. The YAML is kept encrypted with the data key, since a
    config file may hold literal provider keys; `diff` holds the masked diff lines.
    """

    text_encrypted = models.TextField()
    source = models.CharField(max_length=1000)
    diff = models.JSONField(default=list, help_text="[{kind, subject, detail}], secrets masked")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.source} ({len(self.diff)} changes)"

    @classmethod
    def newest(cls) -> PendingConfig | None:
        return cls.objects.order_by("-created_at", "-pk").first()

    @property
    def text(self) -> str:
        from gateway import vault

        return vault.decrypt(self.text_encrypted)
