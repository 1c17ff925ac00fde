"""The config file parser and writer: YAML text ⇄ ConfigSpec, with path-naming errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config_file import (
    ClientKeySpec,
    ConfigError,
    ConfigSpec,
    format_config,
    format_duration,
    parse_config,
    parse_duration,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEED_TEXT = (FIXTURES / "seed.example.config.yaml").read_text()
MINIMAL = """\
providers:
  a:
    endpoint: https://a.example
models:
  - name: m
    provider: a
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), (3, 3.0), (0.25, 0.25)],
)
def test_parse_duration_reads_units_and_bare_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 parsecs", "-1s", "", "s", True, "1d"])
def test_parse_duration_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.1, "100ms"), (5, "5s"), (120, "2m"), (3600, "1h"), (90, "90s"), (1.5, "1500ms"), (0, "0s")],
)
def test_format_duration_uses_the_largest_whole_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.0005, 1e-7, 7200.5, 0.001, 86400.0])
def test_format_duration_reads_back_exactly(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --- the seed's file ---------------------------------------------------------------------


def test_seed_example_parses_unchanged() -> None:
    spec = parse_config(SEED_TEXT).spec
    assert len(spec.providers) == 14
    assert len(spec.models) == 15
    assert spec.root == "spec."
    assert spec.retry == {
        "retrySameProvider": False,
        "maxRetries": 3,
        "initialDelay": 0.1,
        "maxDelay": 5.0,
        "backoffMultiplier": 2.0,
    }
    assert spec.data_retention_days == 30


def test_seed_client_keys_keep_their_list_and_slot() -> None:
    keys = parse_config(SEED_TEXT).spec.client_keys
    assert keys == (
        ClientKeySpec("apiKeys[0]", "random", "$RANDOM_KEY"),
        ClientKeySpec("apiKeys[1]", "env", "env.PROXY_API_KEY"),
        ClientKeySpec("apiKeys[2]", "literal", "sk-proxy-example-key-123"),
        ClientKeySpec("auth.staticKeys[0]", "literal", "sk-static-key-example"),
        ClientKeySpec("auth.staticKeys[1]", "env", "env.STATIC_API_KEY"),
    )


def test_seed_auth_sections_we_do_not_use_are_ignored_with_a_warning_each() -> None:
    warnings = parse_config(SEED_TEXT).warnings
    assert [w.split(" is ignored")[0] for w in warnings] == [
        "spec.auth.database",
        "spec.auth.openid",
        "spec.auth.adminUI",
    ]
    assert "spec.auth.openid is ignored: the admin dashboard uses Django logins" in warnings


def test_seed_provider_keys_stay_as_written() -> None:
    providers = {p.name: p for p in parse_config(SEED_TEXT).spec.providers}
    assert providers["anthropic"].api_key == "env.ANTHROPIC_API_KEY"
    assert providers["selfhosted"].api_key == "not-needed"
    assert providers["groq"].type == "openai"


def test_spec_root_is_optional() -> None:
    nested = parse_config("spec:\n" + "".join(f"  {line}\n" for line in MINIMAL.splitlines()))
    assert nested.spec == parse_config(MINIMAL).spec
    assert nested.spec.root == "spec."


def test_model_alias_defaults_to_its_name() -> None:
    assert parse_config(MINIMAL).spec.models[0].alias == "m"


def test_missing_optional_sections_give_defaults() -> None:
    spec = parse_config(MINIMAL).spec
    assert (spec.retry, spec.routing, spec.client_keys) == ({}, {}, ())
    assert spec.data_retention_days == 30


# --- options -----------------------------------------------------------------------------


def test_routing_section_is_stored_in_seconds_with_only_the_keys_given() -> None:
    text = MINIMAL + "routing:\n  idleTimeout: 2m\n  circuit:\n    cooldown: 30s\n"
    assert parse_config(text).spec.routing == {"idleTimeout": 120.0, "circuit": {"cooldown": 30.0}}


@pytest.mark.parametrize("value", ["off", "'off'", "null", "false"])
def test_hedge_after_can_be_switched_off(value: str) -> None:
    spec = parse_config(MINIMAL + f"routing:\n  hedgeAfter: {value}\n").spec
    assert spec.routing == {"hedgeAfter": None}


def test_model_overrides_go_to_options_in_camel_case() -> None:
    text = MINIMAL + "    firstTokenTimeout: 1m\n    maxOutputTokens: 8192\n    reasoning: true\n"
    model = parse_config(text).spec.models[0]
    assert model.options == {"firstTokenTimeout": 60.0, "maxOutputTokens": 8192, "reasoning": True}


def test_provider_options_hold_timeout_headers_and_max_tokens_field() -> None:
    text = """\
providers:
  o:
    type: openai
    endpoint: https://o.example
    connectTimeout: 500ms
    maxTokensField: max_completion_tokens
    headers: {X-Title: proxy, X-Token: env.TOKEN}
"""
    assert parse_config(text).spec.providers[0].options == {
        "connectTimeout": 0.5,
        "maxTokensField": "max_completion_tokens",
        "headers": {"X-Title": "proxy", "X-Token": "env.TOKEN"},
    }


def test_hash_client_keys_are_normalised_to_lower_case() -> None:
    text = MINIMAL + "apiKeys: ['hash:" + "AB" * 32 + "']\n"
    assert parse_config(text).spec.client_keys[0].value == "hash:" + "ab" * 32


# --- writing -----------------------------------------------------------------------------


def test_format_then_parse_gives_the_same_spec() -> None:
    spec = parse_config(SEED_TEXT).spec
    assert parse_config(format_config(spec)).spec == spec


def test_format_is_a_fixed_point_after_one_round() -> None:
    text = format_config(parse_config(SEED_TEXT).spec)
    assert format_config(parse_config(text).spec) == text


def test_format_writes_durations_in_short_form_and_hedge_off() -> None:
    spec = ConfigSpec(retry={"initialDelay": 0.1}, routing={"hedgeAfter": None, "idleTimeout": 120})
    text = format_config(spec)
    assert "initialDelay: 100ms" in text
    assert "idleTimeout: 2m" in text
    assert parse_config(text).spec.routing == {"hedgeAfter": None, "idleTimeout": 120.0}


# --- errors name the YAML path -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus: 1\n", "bogus: unknown key (expected one of: providers, models"),
        ("spec:\n  auth:\n    bogus: 1\n", "spec.auth.bogus: unknown key"),
        (MINIMAL.replace("endpoint", "endpont"), "providers.a.endpont: unknown key"),
        (MINIMAL + "    wieght: 2\n", "models[0].wieght: unknown key"),
        ("routing:\n  circuit:\n    cooldwn: 5s\n", "routing.circuit.cooldwn: unknown key"),
        ("spec: {}\nmodels: []\n", "models: unknown key (expected one of: spec)"),
    ],
)
def test_unknown_keys_are_errors_at_any_depth(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_unknown_provider_is_named_by_its_model_path() -> None:
    text = "spec:\n  providers: {a: {endpoint: 'https://a.example'}}\n"
    text += "  models:\n" + "".join(f"    - {{name: m{i}, provider: a}}\n" for i in range(3))
    text += "    - {name: m3, provider: x}\n"
    assert error_of(text) == 'spec.models[3].provider: unknown provider "x"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "spec:\n  retry:\n    maxRetries: three\n",
            'spec.retry.maxRetries: expected an integer, got "three"',
        ),
        (MINIMAL + "    context: -1\n", "models[0].context: expected an integer from 0"),
        (
            MINIMAL + "    thinking: maybe\n",
            'models[0].thinking: expected true or false, got "maybe"',
        ),
        (
            "retry:\n  backoffMultiplier: 0.5\n",
            "retry.backoffMultiplier: expected a number at least 1",
        ),
        (
            "routing:\n  circuit:\n    errorRate: 2\n",
            "routing.circuit.errorRate: expected a number from",
        ),
        ("auth:\n  dataRetentionDays: 0\n", "auth.dataRetentionDays: expected an integer from 1"),
        ("providers: [a]\n", "providers: expected a mapping, got a list"),
        ("models: {}\n", "models: expected a list, got a mapping"),
    ],
)
def test_wrong_types_and_ranges_name_the_path(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_bad_duration_names_the_path() -> None:
    message = error_of("routing:\n  idleTimeout: 5 parsecs\n")
    assert message.startswith("routing.idleTimeout: expected a duration like 100ms, 5s, 2m or 1h")


@pytest.mark.parametrize("url", ["ftp://a.example", "a.example", "https://"])
def test_endpoint_must_be_an_http_url(url: str) -> None:
    text = MINIMAL.replace("https://a.example", url)
    assert error_of(text) == f'providers.a.endpoint: expected an http(s) URL, got "{url}"'


def test_endpoint_is_required() -> None:
    assert error_of("providers:\n  a: {type: openai}\n") == "providers.a.endpoint: required"


def test_duplicate_route_names_the_later_entry() -> None:
    text = MINIMAL + "  - {name: other, provider: a}\n  - {name: m, provider: a, alias: m}\n"
    assert error_of(text) == (
        "models[2]: duplicate route: same provider, name and alias as models[0]"
    )


def test_random_key_cannot_be_a_provider_key() -> None:
    text = MINIMAL.replace("    endpoint:", "    apiKey: $RANDOM_KEY\n    endpoint:")
    assert error_of(text).startswith("providers.a.apiKey: $RANDOM_KEY only makes client keys")


def test_max_tokens_field_is_for_openai_providers_only() -> None:
    text = MINIMAL.replace("    endpoint:", "    maxTokensField: max_tokens\n    endpoint:")
    assert error_of(text) == "providers.a.maxTokensField: only applies to type: openai"


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("['env.1BAD']", "apiKeys[0]: expected env.NAME with a variable name"),
        ("['hash:abc']", "apiKeys[0]: expected hash: followed by 64 hex digits"),
        ("['$OTHER']", 'apiKeys[0]: unknown placeholder "$OTHER"'),
        ("['k-1', 'k-1']", "apiKeys[1]: duplicate key: same as apiKeys[0]"),
        ("[12345]", "apiKeys[0]: expected a non-empty string, got 12345"),
    ],
)
def test_bad_client_keys_name_their_slot(keys: str, expected: str) -> None:
    assert error_of(MINIMAL + f"apiKeys: {keys}\n").startswith(expected)


def test_yaml_syntax_errors_give_line_and_column() -> None:
    text = "providers:\n  a:\n    endpoint: https://a.example\n   type: openai\n"
    assert error_of(text).startswith("YAML syntax error at line 4, column 4:")


def test_duplicate_yaml_keys_are_refused() -> None:
    assert error_of("providers:\n  a: {}\n  a: {}\n") == 'duplicate key "a" at line 3, column 3'


def test_an_empty_file_is_refused() -> None:
    assert error_of("# nothing here\n") == "the file is empty"
