"""Settings for anthropic-proxy. This module alone reads the process environment.

Every value has a safe default so that `make run` works on a fresh machine: SQLite in
DATA_DIR, a SECRET_KEY generated once into DATA_DIR, DEBUG off.
"""

import contextlib
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def envsecret(name: str) -> str | None:
    """A secret from NAME, or from the file that NAME_FILE points to (container style)."""
    value = os.environ.get(name)
    if value:
        return value
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


def _secret_key(data_dir: Path) -> str:
    """SECRET_KEY from the environment, else one generated once and kept in DATA_DIR."""
    key = envsecret("SECRET_KEY")
    if key:
        return key
    key_file = data_dir / "secret_key"
    if not key_file.exists():
        _create_once(key_file, secrets.token_urlsafe(50))
    return key_file.read_text().strip()


def _create_once(path: Path, content: str) -> None:
    """Write `path` whole or not at all: processes starting together on a fresh DATA_DIR
    must all read the one key that won, never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    try:
        with contextlib.suppress(FileExistsError):  # another process got there first
            os.link(draft, path)
    finally:
        draft.unlink()


DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
SECRET_KEY = _secret_key(DATA_DIR)
DEBUG = envbool("DEBUG")
HOST = os.environ.get("HOST", "127.0.0.1")
PORT = envint("PORT", 8080)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h.strip()]
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
REDIS_URL = os.environ.get("REDIS_URL", "")
# Names in Redis (keys and pub/sub channels) start with this, so that several gateways, or
# test runs, can share one Redis without hearing each other.
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "anthropic-proxy")

# Largest request body /v1 accepts; larger bodies get 413 request_too_large.
MAX_BODY_BYTES = envint("MAX_BODY_BYTES", 32 * 1024 * 1024)
# The request line and headers together (431 beyond); the time allowed for them to arrive
# after the connection opens or the previous request ends, and for the body after them
# (408 beyond; slow clients must not hold a connection and a task for ever).
MAX_HEADER_BYTES = envint("MAX_HEADER_BYTES", 64 * 1024)
CLIENT_HEADER_TIMEOUT = float(os.environ.get("CLIENT_HEADER_TIMEOUT", "30"))
CLIENT_BODY_TIMEOUT = float(os.environ.get("CLIENT_BODY_TIMEOUT", "60"))
# /v1/messages requests in progress in one process, all keys together (529 beyond): high
# enough for 1,000 concurrent streams. Per-key limits are set per key (dashboard, YAML).
MAX_CONCURRENT_REQUESTS = envint("MAX_CONCURRENT_REQUESTS", 4096)
# How often each process reads the budgeted keys' token use from the request log.
BUDGET_REFRESH_SECONDS = float(os.environ.get("BUDGET_REFRESH_SECONDS", "10"))
# Shutdown on SIGTERM (gateway/lifecycle.py): keep serving with /health at 503 for
# DRAIN_SECONDS, then stop accepting and give requests in progress SHUTDOWN_GRACE_SECONDS
# to finish before ending them with an overloaded_error.
DRAIN_SECONDS = float(os.environ.get("DRAIN_SECONDS", "5"))
SHUTDOWN_GRACE_SECONDS = float(os.environ.get("SHUTDOWN_GRACE_SECONDS", "30"))
# `serve --tps-threshold N` (or TPS_THRESHOLD) overrides routing.tpsThreshold.
TPS_THRESHOLD = float(os.environ["TPS_THRESHOLD"]) if os.environ.get("TPS_THRESHOLD") else None
# Body logging: request and response bodies (redacted, capped) on each RequestLog row.
LOG_BODIES = envbool("LOG_BODIES")
# `serve --log-file PATH` (or LOG_FILE): every request as one JSON line, rotated by size.
LOG_FILE = os.environ.get("LOG_FILE", "")
LOG_FILE_MAX_BYTES = envint("LOG_FILE_MAX_BYTES", 100 * 1024 * 1024)
# GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>` when this is set.
METRICS_TOKEN = envsecret("METRICS_TOKEN") or ""
# How often a process checks the ConfigVersion row for changes (seconds). With REDIS_URL a
# change is also announced at once; the poll is the fallback.
CONFIG_POLL_SECONDS = float(os.environ.get("CONFIG_POLL_SECONDS", "1.0"))
# Whether `serve` runs the daily retention prune. Concurrent prunes are safe (each takes
# locked batches of its own), but one per host is enough: `serve --workers N` leaves it to
# worker 0, and hosts may set SERVE_RETENTION=0 to leave it to one of them.
SERVE_RETENTION = envbool("SERVE_RETENTION", True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "gateway",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "proxy_site.urls"
ASGI_APPLICATION = "proxy_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.pending_config",
            ],
        },
    },
]

_default_db = f"sqlite:///{DATA_DIR / 'proxy.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL") or _default_db)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the log writer append while the admin reads; the init command runs per
    # connection, and WAL is a property of the file, so this is idempotent. Several
    # processes (`serve --workers N`) write to the one file: IMMEDIATE takes the write
    # lock when a transaction begins, and `timeout` (the busy timeout, seconds) makes a
    # writer wait that long for another's lock instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# WhiteNoise serves the dashboard's few static files straight from the apps: no
# collectstatic step for `make run`. The /v1 path never reaches Django or WhiteNoise.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "/dashboard/login/"
LOGIN_REDIRECT_URL = "/dashboard/"
LOGOUT_REDIRECT_URL = "/dashboard/login/"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
# HTTPS=on: the dashboard is reached over TLS, usually through a reverse proxy that sets
# X-Forwarded-Proto. Cookies are then sent over TLS only, plain-HTTP page requests are
# redirected, and browsers are told to use HTTPS (HSTS); `manage.py check --deploy` is
# clean. /v1 and /health are answered before Django and are not redirected.
HTTPS = envbool("HTTPS")
if HTTPS:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = envint("HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("HSTS_PRELOAD", True)  # a header flag; listing is opt-in
CSRF_TRUSTED_ORIGINS = [
    origin.strip()
    for origin in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",")
    if origin.strip()
]

# Failed sign-ins (dashboard and admin) before a lockout of LOGIN_LOCKOUT_SECONDS.
AUTHENTICATION_BACKENDS = ["dashboard.throttle.ThrottledModelBackend"]
LOGIN_FAILURES_PER_USER = envint("LOGIN_FAILURES_PER_USER", 5)
LOGIN_FAILURES_PER_IP = envint("LOGIN_FAILURES_PER_IP", 20)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 15 * 60)
if REDIS_URL:  # shared by every process, so a lockout holds across workers and hosts
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_PREFIX}:cache",
        }
    }

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_PREFIX}:asgi"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
