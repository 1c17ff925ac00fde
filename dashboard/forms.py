"""Forms of the provider, model and config pages.

A provider or model form is read as a one-entry config document by
`config_file.parse_config`, so the dashboard accepts exactly what a config file accepts and
names a bad option by the same path. Secrets are write-only: a key field never shows the
stored key, and leaving it empty on edit keeps the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from django import forms
from django.db import transaction
from django.db.models import Max, QuerySet

from dashboard.config_diff import HEADER_MASK, MASK, mask_headers
from gateway import vault
from gateway.config_file import (
    MODEL_OPTION_FIELDS,
    PROVIDER_OPTION_FIELDS,
    ConfigError,
    ModelSpec,
    ProviderSpec,
    parse_config,
)
from gateway.models import ConfigVersion, ModelRoute, Provider

MAX_UPLOAD_BYTES = 1_000_000
_PLACEHOLDER_PROVIDER = "provider"
_PLACEHOLDER_ENDPOINT = "http://provider.invalid"
_PROVIDER_FIELDS = {"": "name", "type": "type", "endpoint": "endpoint", "apiKey": "api_key"}
_PROVIDER_FIELDS |= {"enabled": "enabled"}
_MODEL_FIELDS = {name: name for name in ("name", "alias", "context", "weight", "thinking")}
_MODEL_FIELDS |= {"enabled": "enabled"}
_CHECKBOX = forms.CheckboxInput(attrs={"style": "width: auto"})


def key_display(provider: Provider) -> str:
    """The stored key as it may be shown: the reference, or only that there is one."""
    if provider.api_key_env:
        return provider.api_key_env
    return MASK if provider.api_key_encrypted else "none"


def options_text(options: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    """Stored options as YAML for the textarea, written as in the config file."""
    if not options:
        return ""
    written = {k: schema[k].write(v) if k in schema else v for k, v in options.items()}
    if isinstance(written.get("headers"), Mapping):
        written["headers"] = mask_headers(written["headers"])
    return yaml.safe_dump(written, sort_keys=False, allow_unicode=True, default_flow_style=False)


def read_options(
    text: str, schema: Mapping[str, Any], stored: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The textarea's YAML (or JSON) mapping; its values are checked by `parse_config` later.

    A masked header value (••••) stands for the stored one.
    """
    try:
        raw = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("options", f"not valid YAML or JSON{where}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("options", "expected a mapping of option: value")
    for key in raw:
        if key not in schema:
            expected = ", ".join(schema)
            raise ConfigError(f"options.{key}", f"unknown option (expected one of: {expected})")
    headers = raw.get("headers")
    if isinstance(headers, dict):
        raw["headers"] = _unmask_headers(headers, (stored or {}).get("headers") or {})
    return raw


def _unmask_headers(headers: dict[Any, Any], stored: Mapping[str, str]) -> dict[Any, Any]:
    out = dict(headers)
    for name, value in headers.items():
        if value != HEADER_MASK:
            continue
        if name not in stored:
            raise ConfigError(f"options.headers.{name}", "•••• stands for a stored value: none")
        out[name] = stored[name]
    return out


def _place(
    exc: ConfigError, prefix: str, fields: Mapping[str, str], schema: Mapping[str, Any]
) -> tuple[str | None, str]:
    """The form field a `parse_config` error belongs to, and its message for that field."""
    if not exc.path.startswith(prefix):
        return None, str(exc)
    rest = exc.path[len(prefix) :]
    head = rest.lstrip(".").split(".")[0]
    if head in schema:
        return "options", f"options{rest}: {exc.message}"
    return fields.get(head), exc.message


def _next_position(rows: QuerySet[Any]) -> int:
    top = rows.aggregate(top=Max("position"))["top"]
    return 0 if top is None else top + 1


def _options_widget() -> forms.Textarea:
    return forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"})


class ProviderForm(forms.Form):
    name = forms.CharField(max_length=100)
    type = forms.ChoiceField(
        choices=[
            ("anthropic", "anthropic (Messages API)"),
            ("openai", "openai (Chat Completions)"),
        ],
        initial=Provider.Dialect.ANTHROPIC,
        help_text="The API the provider speaks; openai requests and answers are converted.",
    )
    endpoint = forms.CharField(max_length=500, help_text="For example https://api.anthropic.com")
    api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="env.NAME to read it from the environment, or the key itself (stored "
        "encrypted, never shown again). Leave empty to keep the current key.",
    )
    clear_api_key = forms.BooleanField(
        label="Remove the stored key", required=False, widget=_CHECKBOX
    )
    enabled = forms.BooleanField(required=False, initial=True, widget=_CHECKBOX)
    options = forms.CharField(
        required=False,
        widget=_options_widget(),
        help_text="YAML or JSON: " + ", ".join(PROVIDER_OPTION_FIELDS),
    )

    def __init__(self, *args: Any, instance: Provider | None = None, **kwargs: Any) -> None:
        self.instance = instance
        self.spec: ProviderSpec | None = None
        if instance is not None:
            kwargs.setdefault("initial", _provider_initial(instance))
        super().__init__(*args, **kwargs)
        if instance is None or not (instance.api_key_env or instance.api_key_encrypted):
            del self.fields["clear_api_key"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        others = Provider.objects.filter(name=name)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError("a provider with this name exists")
        return name

    def clean_api_key(self) -> str:
        key = self.cleaned_data["api_key"]
        if key.startswith(vault.ENCRYPTED_PREFIX):
            raise forms.ValidationError("paste the key itself (encrypted: is for config files)")
        return key

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        stored = self.instance.options if self.instance is not None else {}
        try:
            options = read_options(data.get("options") or "", PROVIDER_OPTION_FIELDS, stored)
        except ConfigError as exc:
            self.add_error("options", str(exc))
            return data
        name = data.get("name") or _PLACEHOLDER_PROVIDER
        endpoint = data.get("endpoint") or _PLACEHOLDER_ENDPOINT
        body = {"type": data.get("type") or "anthropic", "endpoint": endpoint}
        body |= {"enabled": bool(data.get("enabled")), **options}
        if data.get("api_key"):
            body["apiKey"] = data["api_key"]
        try:
            document = parse_config(yaml.safe_dump({"providers": {name: body}}))
        except ConfigError as exc:
            self.add_error(
                *_place(exc, f"providers.{name}", _PROVIDER_FIELDS, PROVIDER_OPTION_FIELDS)
            )
            return data
        self.spec = document.spec.providers[0]
        return data

    def save(self) -> Provider:
        """Store the provider and bump the config version, in one transaction."""
        spec = self.spec
        assert spec is not None, "save() after a successful is_valid()"
        row = self.instance or Provider(position=_next_position(Provider.objects.all()))
        row.name, row.type, row.endpoint = spec.name, spec.type, spec.endpoint
        row.enabled, row.options = spec.enabled, _sealed_options(spec, self.instance)
        if spec.api_key.startswith(vault.ENV_PREFIX):
            row.api_key_env, row.api_key_encrypted = spec.api_key, ""
        elif spec.api_key:
            row.api_key_env, row.api_key_encrypted = "", vault.encrypt(spec.api_key)
        elif self.cleaned_data.get("clear_api_key"):
            row.api_key_env, row.api_key_encrypted = "", ""
        with transaction.atomic():
            row.save()
            ConfigVersion.bump()
        return row


def _sealed_options(spec: ProviderSpec, stored: Provider | None) -> dict[str, Any]:
    """The options to store: credential-like header values encrypted (gateway/vault.py)."""
    options = dict(spec.options)
    if options.get("headers"):
        kept = ((stored.options or {}).get("headers") or {}) if stored is not None else {}
        options["headers"] = vault.seal_headers(options["headers"], kept)
    return options


def _provider_initial(row: Provider) -> dict[str, Any]:
    return {
        "name": row.name,
        "type": row.type,
        "endpoint": row.endpoint,
        "enabled": row.enabled,
        "options": options_text(row.options, PROVIDER_OPTION_FIELDS),
    }


class ModelRouteForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="The model name sent to the provider.")
    alias = forms.CharField(
        max_length=200,
        required=False,
        help_text="Requested names this route serves; * is a wildcard. Empty: the name.",
    )
    context = forms.IntegerField(initial=0, help_text="Context window in tokens (0: unknown).")
    weight = forms.IntegerField(initial=1, help_text="Higher weights are tried first.")
    thinking = forms.BooleanField(required=False, widget=_CHECKBOX)
    enabled = forms.BooleanField(required=False, initial=True, widget=_CHECKBOX)
    options = forms.CharField(
        required=False,
        widget=_options_widget(),
        help_text="YAML or JSON: " + ", ".join(MODEL_OPTION_FIELDS),
    )

    def __init__(
        self, *args: Any, provider: Provider, instance: ModelRoute | None = None, **kwargs: Any
    ) -> None:
        self.provider = provider
        self.instance = instance
        self.spec: ModelSpec | None = None
        if instance is not None:
            kwargs.setdefault("initial", _route_initial(instance))
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        try:
            options = read_options(data.get("options") or "", MODEL_OPTION_FIELDS)
        except ConfigError as exc:
            self.add_error("options", str(exc))
            return data
        body = {k: data[k] for k in ("context", "weight") if data.get(k) is not None}
        body["name"] = data.get("name") or "model"
        body |= {"thinking": bool(data.get("thinking")), "enabled": bool(data.get("enabled"))}
        body |= {"provider": _PLACEHOLDER_PROVIDER, **options}
        if data.get("alias"):
            body["alias"] = data["alias"]
        document = {
            "providers": {_PLACEHOLDER_PROVIDER: {"endpoint": _PLACEHOLDER_ENDPOINT}},
            "models": [body],
        }
        try:
            self.spec = parse_config(yaml.safe_dump(document)).spec.models[0]
        except ConfigError as exc:
            self.add_error(*_place(exc, "models[0]", _MODEL_FIELDS, MODEL_OPTION_FIELDS))
            return data
        self._refuse_duplicate(self.spec)
        return data

    def _refuse_duplicate(self, spec: ModelSpec) -> None:
        others = ModelRoute.objects.filter(provider=self.provider, name=spec.name, alias=spec.alias)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            self.spec = None
            self.add_error(None, "this provider already has a route with this name and alias")

    def save(self) -> ModelRoute:
        """Store the route and bump the config version, in one transaction."""
        spec = self.spec
        assert spec is not None, "save() after a successful is_valid()"
        row = self.instance or ModelRoute(
            provider=self.provider, position=_next_position(ModelRoute.objects.all())
        )
        row.name, row.alias, row.context, row.weight = (
            spec.name,
            spec.alias,
            spec.context,
            spec.weight,
        )
        row.thinking, row.enabled, row.options = spec.thinking, spec.enabled, dict(spec.options)
        with transaction.atomic():
            row.save()
            ConfigVersion.bump()
        return row


def _route_initial(row: ModelRoute) -> dict[str, Any]:
    return {
        "name": row.name,
        "alias": row.alias if row.alias != row.name else "",
        "context": row.context,
        "weight": row.weight,
        "thinking": row.thinking,
        "enabled": row.enabled,
        "options": options_text(row.options, MODEL_OPTION_FIELDS),
    }


class ConfigUploadForm(forms.Form):
    config_file = forms.FileField(label="YAML file", required=False)
    config_text = forms.CharField(
        label="Or paste YAML", required=False, strip=False, widget=_options_widget()
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload, pasted = data.get("config_file"), data.get("config_text") or ""
        if upload is not None and pasted.strip():
            raise forms.ValidationError("choose a file or paste YAML, not both")
        if upload is None and not pasted.strip():
            raise forms.ValidationError("choose a YAML file or paste its text")
        if upload is None:
            data["text"] = pasted
            return data
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"the file is larger than {MAX_UPLOAD_BYTES:,} bytes")
        try:
            data["text"] = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError("the file is not UTF-8 text") from None
        return data
