"""import_config / export_config / create_api_key against the database."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway import vault
from gateway.auth import hash_key
from gateway.models import ApiKey, ConfigVersion, ModelRoute, Provider, RoutingSettings

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[2]
SEED_TEXT = (REPO / "tests" / "fixtures" / "seed.example.config.yaml").read_text()
SMALL = """\
providers:
  a:
    endpoint: https://a.example
    apiKey: env.A_KEY
  b:
    type: openai
    endpoint: https://b.example/v1
models:
  - {name: m1, provider: a, alias: "claude-*", weight: 3}
  - {name: m2, provider: b, alias: "claude-*"}
apiKeys:
  - literal-client-key-0001
"""
GENERATED_KEY = re.compile(r"^  (sk-ap-\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    out: str
    err: str


def import_text(text: str, tmp_path: Path) -> Run:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    call_command("import_config", str(path), stdout=out, stderr=err)
    return Run(out.getvalue(), err.getvalue())


def export_text() -> str:
    out = io.StringIO()
    call_command("export_config", stdout=out)
    return out.getvalue()


def dump_tables() -> dict[str, list[dict[str, Any]]]:
    tables = (Provider, ModelRoute, RoutingSettings, ApiKey, ConfigVersion)
    return {t.__name__: list(t.objects.order_by("pk").values()) for t in tables}


# --- the seed's file ---------------------------------------------------------------------


def test_seed_example_imports_unchanged(tmp_path: Path) -> None:
    run = import_text(SEED_TEXT, tmp_path)
    assert Provider.objects.count() == 14
    assert ModelRoute.objects.count() == 15
    assert RoutingSettings.load().retry["initialDelay"] == 0.1
    assert "added provider anthropic" in run.out
    assert "added model deepseek/deepseek-chat (claude-sonnet*)" in run.out
    assert ConfigVersion.current() == 1


def test_seed_example_warns_about_each_ignored_auth_section(tmp_path: Path) -> None:
    err = import_text(SEED_TEXT, tmp_path).err
    for section in ("database", "openid", "adminUI"):
        assert f"warning: spec.auth.{section} is ignored" in err


def test_seed_example_stores_three_client_keys_and_two_static_keys(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    names = set(ApiKey.objects.filter(source="config").values_list("name", flat=True))
    assert names == {
        "apiKeys[0] (generated)",
        "apiKeys[1]",
        "apiKeys[2]",
        "auth.staticKeys[0]",
        "auth.staticKeys[1]",
    }


def test_seed_random_key_is_printed_once_and_stored_as_a_hash(tmp_path: Path) -> None:
    out = import_text(SEED_TEXT, tmp_path).out
    printed = GENERATED_KEY.findall(out)
    assert len(printed) == 1
    assert "store it now, it will not be shown again" in out
    row = ApiKey.objects.get(name="apiKeys[0] (generated)")
    assert row.key_hash == hash_key(printed[0])
    assert printed[0] not in str(dump_tables())


def test_seed_env_key_is_stored_as_a_reference(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    row = ApiKey.objects.get(name="apiKeys[1]")
    assert (row.env_ref, row.key_hash, row.prefix) == ("env.PROXY_API_KEY", None, "")


def test_seed_env_provider_keys_stay_references(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    row = Provider.objects.get(name="anthropic")
    assert (row.api_key_env, row.api_key_encrypted) == ("env.ANTHROPIC_API_KEY", "")


def test_importing_the_same_file_twice_changes_nothing(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    before = dump_tables()
    run = import_text(SEED_TEXT, tmp_path)
    assert run.out == "no changes\n"
    assert "store it now" not in run.out
    assert dump_tables() == before


def test_repo_example_imports_cleanly_and_is_stable(tmp_path: Path) -> None:
    text = (REPO / "example.config.yaml").read_text()
    first = import_text(text, tmp_path)
    assert first.err == ""
    assert len(GENERATED_KEY.findall(first.out)) == 1
    assert import_text(text, tmp_path).out == "no changes\n"


def test_file_can_come_from_stdin() -> None:
    out = io.StringIO()
    call_command("import_config", "-", stdin=io.StringIO(SMALL), stdout=out, stderr=io.StringIO())
    assert "added provider a" in out.getvalue()


# --- errors leave the database as it was -------------------------------------------------

BAD_FILES = {
    "unknown key at depth": (
        SMALL + "routing:\n  circuit:\n    cooldwn: 5s\n",
        "routing.circuit.cooldwn: unknown key",
    ),
    "unknown provider": (
        SMALL.replace("provider: b", "provider: x"),
        'models[1].provider: unknown provider "x"',
    ),
    "bad type": (SMALL + "retry:\n  maxRetries: three\n", "retry.maxRetries: expected an integer"),
    "bad duration": (SMALL + "routing:\n  idleTimeout: soon\n", "routing.idleTimeout: expected"),
    "bad url": (
        SMALL.replace("https://a.example", "a.example"),
        "providers.a.endpoint: expected an http(s) URL",
    ),
    "duplicate route": (
        SMALL.replace("apiKeys:", "  - {name: m1, provider: a, alias: 'claude-*'}\napiKeys:"),
        "models[2]: duplicate route",
    ),
    "random provider key": (
        SMALL.replace("env.A_KEY", "$RANDOM_KEY"),
        "providers.a.apiKey: $RANDOM_KEY",
    ),
    "yaml syntax": (
        SMALL.replace("env.A_KEY\n", "env.A_KEY\n   type: openai\n"),
        "YAML syntax error at line 5, column 4",
    ),
    "undecryptable provider key": (
        SMALL.replace("env.A_KEY", "encrypted:not-a-token"),
        "providers.a.apiKey: cannot be decrypted",
    ),
}


@pytest.mark.parametrize("preloaded", [False, True], ids=["empty-db", "after-import"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_names_the_path_and_changes_nothing(
    case: str, preloaded: bool, tmp_path: Path
) -> None:
    if preloaded:
        import_text(SEED_TEXT, tmp_path)
    before = dump_tables()
    text, expected = BAD_FILES[case]
    with pytest.raises(CommandError) as caught:
        import_text(text, tmp_path)
    assert str(caught.value).startswith(expected)
    assert dump_tables() == before


def test_a_late_error_rolls_back_what_was_already_written(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    cli_key = GENERATED_KEY.findall(_create_key_output("other"))[0]
    before = dump_tables()
    # Providers and models are written before the keys; the clash is found at the keys.
    text = SMALL.replace("literal-client-key-0001", cli_key)
    with pytest.raises(CommandError) as caught:
        import_text(text, tmp_path)
    assert str(caught.value) == 'apiKeys[0]: this key already exists as cli key "other"'
    assert dump_tables() == before


def _create_key_output(name: str) -> str:
    out = io.StringIO()
    call_command("create_api_key", "--name", name, stdout=out)
    return out.getvalue()


# --- export and the round trip -----------------------------------------------------------


def test_export_then_import_is_a_fixed_point(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    exported = export_text()
    before = dump_tables()
    assert import_text(exported, tmp_path).out == "no changes\n"
    assert dump_tables() == before
    assert export_text() == exported


def test_the_original_file_after_its_export_still_changes_nothing(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    import_text(export_text(), tmp_path)
    before = dump_tables()
    assert import_text(SEED_TEXT, tmp_path).out == "no changes\n"
    assert dump_tables() == before


def test_export_uses_references_tokens_and_hashes(tmp_path: Path) -> None:
    import_text(SEED_TEXT, tmp_path)
    exported = export_text()
    assert "apiKey: env.ANTHROPIC_API_KEY" in exported
    assert "apiKey: encrypted:" in exported
    assert "- env.PROXY_API_KEY" in exported
    assert "- hash:" + hash_key("sk-proxy-example-key-123") in exported
    assert "initialDelay: 100ms" in exported
    assert "spec:" not in exported


def test_export_imports_into_an_empty_database_with_the_same_keys(tmp_path: Path) -> None:
    import_text(SMALL.replace("env.A_KEY", "provider-secret-0001"), tmp_path)
    exported = export_text()
    for table in (ModelRoute, Provider, ApiKey):
        table.objects.all().delete()
    import_text(exported, tmp_path)
    assert vault.decrypt(Provider.objects.get(name="a").api_key_encrypted) == "provider-secret-0001"
    assert ApiKey.objects.get(name="apiKeys[0]").key_hash == hash_key("literal-client-key-0001")
    assert export_text() == exported


def test_export_to_a_file_writes_the_same_text(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    target = tmp_path / "out.yaml"
    call_command("export_config", str(target), stdout=io.StringIO(), stderr=io.StringIO())
    assert target.read_text() == export_text()


# --- secrets -----------------------------------------------------------------------------


def test_literal_provider_key_is_never_stored_or_exported_in_plaintext(tmp_path: Path) -> None:
    import_text(SMALL.replace("env.A_KEY", "provider-secret-0001"), tmp_path)
    assert "provider-secret-0001" not in str(dump_tables())
    assert "provider-secret-0001" not in export_text()
    row = Provider.objects.get(name="a")
    assert vault.decrypt(row.api_key_encrypted) == "provider-secret-0001"


def test_literal_client_key_is_stored_only_as_a_hash(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    assert "literal-client-key-0001" not in str(dump_tables())
    row = ApiKey.objects.get(name="apiKeys[0]")
    assert (row.key_hash, row.prefix) == (hash_key("literal-client-key-0001"), "literal-clie")


def test_unchanged_literal_provider_key_keeps_its_token(tmp_path: Path) -> None:
    text = SMALL.replace("env.A_KEY", "provider-secret-0001")
    import_text(text, tmp_path)
    token = Provider.objects.get(name="a").api_key_encrypted
    assert import_text(text, tmp_path).out == "no changes\n"
    assert Provider.objects.get(name="a").api_key_encrypted == token


# --- what an import replaces -------------------------------------------------------------


def test_spec_root_is_optional(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    nested = "spec:\n" + "".join(f"  {line}\n" for line in SMALL.splitlines())
    assert import_text(nested, tmp_path).out == "no changes\n"


def test_removing_a_provider_removes_its_routes(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    without_b = SMALL.replace("  b:\n    type: openai\n    endpoint: https://b.example/v1\n", "")
    without_b = without_b.replace('  - {name: m2, provider: b, alias: "claude-*"}\n', "")
    out = import_text(without_b, tmp_path).out
    assert out.splitlines() == ["removed model b/m2 (claude-*)", "removed provider b"]
    assert not ModelRoute.objects.filter(provider__name="b").exists()
    assert list(Provider.objects.values_list("name", flat=True)) == ["a"]


def test_a_changed_field_is_reported_and_bumps_the_version(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    version = ConfigVersion.current()
    out = import_text(SMALL.replace("weight: 3", "weight: 4"), tmp_path).out
    assert out == "changed model a/m1 (claude-*): weight\n"
    assert ConfigVersion.current() == version + 1


def test_reordering_models_is_reported_once(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    m1 = '  - {name: m1, provider: a, alias: "claude-*", weight: 3}\n'
    m2 = '  - {name: m2, provider: b, alias: "claude-*"}\n'
    out = import_text(SMALL.replace(m1 + m2, m2 + m1), tmp_path).out
    assert out == "reordered models\n"
    assert list(ModelRoute.objects.values_list("name", flat=True)) == ["m2", "m1"]


def test_settings_sections_are_stored_and_removed(tmp_path: Path) -> None:
    import_text(SMALL + "routing:\n  hedgeAfter: off\nauth:\n  dataRetentionDays: 7\n", tmp_path)
    row = RoutingSettings.load()
    assert (row.routing, row.data_retention_days) == ({"hedgeAfter": None}, 7)
    out = import_text(SMALL, tmp_path).out
    assert out.splitlines() == [
        "changed routing: hedgeAfter",
        "changed auth.dataRetentionDays: 7 → 30",
    ]


# --- client key identity -----------------------------------------------------------------


def test_moving_a_key_to_another_slot_keeps_its_row(tmp_path: Path) -> None:
    import_text(SMALL + "  - env.OTHER_KEY\n", tmp_path)
    ids = dict(ApiKey.objects.values_list("name", "id"))
    swapped = SMALL.replace("  - literal-client-key-0001\n", "  - env.OTHER_KEY\n")
    out = import_text(swapped + "  - literal-client-key-0001\n", tmp_path).out
    assert out.splitlines() == [
        "moved key apiKeys[1] → apiKeys[0]",
        "moved key apiKeys[0] → apiKeys[1]",
    ]
    assert dict(ApiKey.objects.values_list("name", "id")) == {
        "apiKeys[0]": ids["apiKeys[1]"],
        "apiKeys[1]": ids["apiKeys[0]"],
    }


def test_replacing_a_literal_key_with_random_key_really_replaces_it(tmp_path: Path) -> None:
    import_text(SMALL, tmp_path)
    out = import_text(SMALL.replace("literal-client-key-0001", "$RANDOM_KEY"), tmp_path).out
    assert out.startswith("removed key apiKeys[0]\ncreated key apiKeys[0]: sk-ap-")
    assert not ApiKey.objects.filter(key_hash=hash_key("literal-client-key-0001")).exists()


def test_a_literal_key_and_its_hash_cannot_both_be_listed(tmp_path: Path) -> None:
    digest = hash_key("literal-client-key-0001")
    with pytest.raises(CommandError) as caught:
        import_text(SMALL + f"  - hash:{digest}\n", tmp_path)
    assert str(caught.value) == "apiKeys[1]: duplicate key: same as apiKeys[0]"


def test_keys_made_outside_the_file_survive_an_import(tmp_path: Path) -> None:
    ApiKey.objects.create(name="dashboard key", key_hash="0" * 64, source="admin")
    import_text(SMALL, tmp_path)
    import_text(SMALL.replace("  - literal-client-key-0001\n", ""), tmp_path)
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["dashboard key"]


# --- create_api_key ----------------------------------------------------------------------


def test_create_api_key_prints_a_key_whose_hash_is_stored() -> None:
    version = ConfigVersion.current()
    out = _create_key_output("laptop")
    assert "store it now, it will not be shown again" in out.lower()
    key = GENERATED_KEY.findall(out)[0]
    row = ApiKey.objects.get(name="laptop")
    assert (row.source, row.key_hash, row.prefix) == ("cli", hash_key(key), key[:12])
    assert row.expires_at is None
    assert ConfigVersion.current() == version + 1


def test_create_api_key_can_expire() -> None:
    call_command("create_api_key", "--name", "temp", "--expires-days", "7", stdout=io.StringIO())
    assert ApiKey.objects.get(name="temp").expires_at is not None


def test_create_api_key_refuses_a_blank_name() -> None:
    with pytest.raises(CommandError):
        call_command("create_api_key", "--name", " ", stdout=io.StringIO())


LIMITED = (
    SMALL
    + """\
  - key: env.TEAM_KEY
    limits: {concurrent: 4, requestsPerMinute: 60, tokensPerDay: 2000000}
"""
)


def test_key_limits_are_imported_exported_and_changed_in_place(tmp_path: Path) -> None:
    import_text(LIMITED, tmp_path)
    row = ApiKey.objects.get(name="apiKeys[1]")
    assert (row.max_concurrent, row.requests_per_minute) == (4, 60)
    assert (row.tokens_per_day, row.tokens_per_month) == (2_000_000, None)
    exported = export_text()
    assert "tokensPerDay: 2000000" in exported
    assert import_text(exported, tmp_path).out.strip() == "no changes"
    tighter = LIMITED.replace("concurrent: 4", "concurrent: 2")
    assert import_text(tighter, tmp_path).out.splitlines() == ["changed key apiKeys[1]"]
    assert ApiKey.objects.get(pk=row.pk).max_concurrent == 2
    plain = LIMITED.replace("  - key: env.TEAM_KEY\n", "  - env.TEAM_KEY\n")
    plain = plain.replace(
        "    limits: {concurrent: 4, requestsPerMinute: 60, tokensPerDay: 2000000}\n", ""
    )
    import_text(plain, tmp_path)
    assert ApiKey.objects.get(pk=row.pk).limits == ApiKey().limits  # all lifted


def test_key_limits_are_checked_with_their_yaml_path(tmp_path: Path) -> None:
    bad = LIMITED.replace("requestsPerMinute: 60", "requestsPerMinute: 0")
    with pytest.raises(CommandError, match=r"apiKeys\[1\]\.limits\.requestsPerMinute"):
        import_text(bad, tmp_path)
    unknown = LIMITED.replace("concurrent: 4", "parallel: 4")
    with pytest.raises(CommandError, match=r"apiKeys\[1\]\.limits\.parallel: unknown key"):
        import_text(unknown, tmp_path)
