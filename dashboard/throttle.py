"""Login throttling for the dashboard and the Django admin.

After LOGIN_FAILURES_PER_USER failed sign-ins for one username, or LOGIN_FAILURES_PER_IP
from one client address, within LOGIN_LOCKOUT_SECONDS, further attempts are refused
without checking the password until the window has passed since the last failure. The
counts live in Django's cache: Redis when REDIS_URL is set (shared by every process and
host), otherwise this process's memory. A successful sign-in clears the username's count.

The backend does the refusing, so every login form is covered; the forms below only add
a message that says why, instead of "wrong password".
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest


def _cache_key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]  # no usernames in the cache
    return f"login-failures:{kind}:{digest}"


def _keys(request: HttpRequest | None, username: str | None) -> list[tuple[str, int]]:
    name = (username or "").strip().lower()
    keys = [(_cache_key("user", name), settings.LOGIN_FAILURES_PER_USER)]
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    if address:
        keys.append((_cache_key("ip", address), settings.LOGIN_FAILURES_PER_IP))
    return keys


def locked(request: HttpRequest | None, username: str | None) -> bool:
    counts = cache.get_many([key for key, _ in _keys(request, username)])
    return any(counts.get(key, 0) >= limit for key, limit in _keys(request, username))


def failed(request: HttpRequest | None, username: str | None) -> None:
    window = settings.LOGIN_LOCKOUT_SECONDS
    for key, _ in _keys(request, username):
        cache.add(key, 0, window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, window)
        cache.touch(key, window)  # the lockout runs from the last failure


def succeeded(username: str | None) -> None:
    cache.delete(_keys(None, username)[0][0])


class ThrottledModelBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if locked(request, username):
            return None
        user = super().authenticate(request, username, password, **kwargs)
        if user is None:
            failed(request, username)
        else:
            succeeded(username)
        return user


def _refuse_if_locked(form: AuthenticationForm) -> None:
    if locked(form.request, form.data.get("username")):
        minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
        raise ValidationError(
            f"Too many failed sign-ins. Try again in {minutes} minutes.", code="throttled"
        )


class ThrottledAuthenticationForm(AuthenticationForm):
    throttled = False  # the login template says why, instead of "wrong password"

    def clean(self) -> dict[str, Any]:
        try:
            _refuse_if_locked(self)
        except ValidationError:
            self.throttled = True
            raise
        return super().clean()


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    def clean(self) -> dict[str, Any]:
        _refuse_if_locked(self)
        return super().clean()
