"""The Django admin as a first UI: every change bumps the config version so running
processes reload within a second; secrets are entered once and never shown again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from dashboard.throttle import ThrottledAdminAuthenticationForm
from gateway import vault
from gateway.auth import display_prefix, hash_key, new_key
from gateway.models import ApiKey, Attempt, ConfigVersion, ModelRoute, Provider, RequestLog


class VersionBumpingAdmin(admin.ModelAdmin):
    """Any save or delete is a configuration change."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        ConfigVersion.bump()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        ConfigVersion.bump()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        ConfigVersion.bump()


class ProviderForm(forms.ModelForm):
    endpoint = forms.URLField(assume_scheme="https", max_length=500)
    new_api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="A literal key, stored encrypted. Leave empty to keep the current one.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = Provider
        fields = ["name", "type", "endpoint", "api_key_env", "enabled", "options", "position"]
        help_texts = {"api_key_env": "Or a reference such as env.ANTHROPIC_API_KEY."}

    def clean_api_key_env(self) -> str:
        value = self.cleaned_data["api_key_env"].strip()
        if value and not vault.env_name(value):
            raise forms.ValidationError("write it as env.NAME")
        return value

    def save(self, commit: bool = True) -> Provider:
        provider = super().save(commit=False)
        secret = self.cleaned_data.get("new_api_key")
        if self.cleaned_data.get("clear_api_key"):
            provider.api_key_encrypted = ""
        elif secret:
            provider.api_key_encrypted = vault.encrypt(secret)
        if commit:
            provider.save()
        return provider


class RouteInline(admin.TabularInline):
    model = ModelRoute
    extra = 0
    fields = ["name", "alias", "context", "weight", "thinking", "enabled", "position"]


# The admin's login counts failed sign-ins like the dashboard's (dashboard/throttle.py).
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(Provider)
class ProviderAdmin(VersionBumpingAdmin):
    form = ProviderForm
    list_display = ["name", "type", "endpoint", "key_source", "enabled"]
    list_filter = ["type", "enabled"]
    inlines = [RouteInline]

    @admin.display(description="key")
    def key_source(self, obj: Provider) -> str:
        if obj.api_key_env:
            return obj.api_key_env
        return "encrypted literal" if obj.api_key_encrypted else "none"

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        ConfigVersion.bump()


@admin.register(ModelRoute)
class ModelRouteAdmin(VersionBumpingAdmin):
    list_display = ["name", "alias", "provider", "weight", "context", "enabled"]
    list_filter = ["provider", "enabled"]
    search_fields = ["name", "alias"]


@admin.register(ApiKey)
class ApiKeyAdmin(VersionBumpingAdmin):
    list_display = ["name", "prefix", "source", "created_at", "expires_at", "revoked_at"]
    list_filter = ["source"]
    fields = ["name", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "source", "created_at", "last_used_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            key = new_key()
            obj.key_hash, obj.prefix, obj.source = hash_key(key), display_prefix(key), "admin"
            messages.warning(
                request,
                f"New key for {obj.name}: {key} — copy it now, it is "
                "not stored and will not be shown again.",
            )
        super().save_model(request, obj, form, change)


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in Attempt._meta.fields]


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "api_key_name",
        "requested_model",
        "provider",
        "status",
        "outcome",
        "input_tokens",
        "output_tokens",
        "ttft_ms",
        "duration_ms",
    ]
    list_filter = ["outcome", "status", "stream", "provider"]
    search_fields = ["requested_model", "error_message", "api_key_name"]
    date_hierarchy = "created_at"
    inlines = [AttemptInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
