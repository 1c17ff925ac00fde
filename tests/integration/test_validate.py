"""`manage.py validate` against fake providers of both dialects over real loopback."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from gateway.catalog import context_of, parse_page
from gateway.config_db import apply_config
from gateway.config_file import parse_config
from gateway.models import ConfigVersion, ModelRoute
from tests.fakes.upstream import FakeUpstream, Received, Script

ANTHROPIC_KEY = "sk-ant-test-key-4f1c9e2a7b"
OPENAI_KEY = "sk-openai-test-key-8d3b6a0c5e"
CLAUDE = ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1", "claude-3-7", "claude-x")


@dataclass(frozen=True)
class Run:
    out: str
    err: str
    error: CommandError | None

    @property
    def text(self) -> str:
        return self.out + self.err + (str(self.error) if self.error else "")

    def row(self, *cells: str) -> str:
        """The one table line whose leading cells are `cells`."""
        lines = [line for line in self.out.splitlines() if line.split()[: len(cells)] == [*cells]]
        assert len(lines) == 1, f"expected one row starting {cells}:\n{self.out}"
        return lines[0]


def validate(**options: object) -> Run:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("validate", stdout=out, stderr=err, **options)
    except CommandError as exc:
        return Run(out.getvalue(), err.getvalue(), exc)
    return Run(out.getvalue(), err.getvalue(), None)


def listing_requests(fake: FakeUpstream) -> list[Received]:
    return [r for r in fake.requests if r.path.endswith("/v1/models")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def anthropic_fake() -> Iterator[FakeUpstream]:
    fields = {"claude-sonnet-4-5": {"max_input_tokens": 1_000_000}}
    with FakeUpstream(models=CLAUDE, model_fields=fields) as fake:
        yield fake


@pytest.fixture
def openai_fake() -> Iterator[FakeUpstream]:
    fields = {"llama-3.3-70b": {"context_window": 131_072}, "qwen3": {"context_length": 40_960}}
    with FakeUpstream(
        dialect="openai", models=["llama-3.3-70b", "qwen3"], model_fields=fields
    ) as f:
        yield f


@pytest.fixture
def config(
    tmp_path: Path,
    anthropic_fake: FakeUpstream,
    openai_fake: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Anthropic with an env key, OpenAI-style (Groq-like) with a literal key."""
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", ANTHROPIC_KEY)
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""\
providers:
  anthropic:
    endpoint: {anthropic_fake.url}
    apiKey: env.ANTHROPIC_TEST_KEY
  groq:
    type: openai
    endpoint: {openai_fake.url}/openai/v1
    apiKey: {OPENAI_KEY}
models:
  - {{name: claude-sonnet-4-5, provider: anthropic, alias: "claude-sonnet-*", context: 1000000}}
  - {{name: claude-haiku-4-5, provider: anthropic, alias: "claude-haiku-*", context: 200000}}
  - {{name: llama-3.3-70b, provider: groq, alias: llama, context: 128000, weight: 2}}
  - {{name: qwen3, provider: groq, alias: qwen, context: 40960}}
"""
    )
    return path


def add_model(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"  - {line}\n")


# --- found, missing, context windows -----------------------------------------------------


def test_listed_models_are_found_and_nothing_fails(config: Path) -> None:
    run = validate(config=str(config))

    assert run.error is None, run.text
    assert "found" in run.row("anthropic", "claude-sonnet-4-5")
    assert "found" in run.row("groq", "qwen3")
    assert "ok" in run.row("anthropic", "anthropic")
    assert "ok" in run.row("groq", "openai")


def test_a_model_the_provider_does_not_list_is_missing_and_fails(config: Path) -> None:
    add_model(config, "{name: gpt-imaginary, provider: groq, alias: imaginary}")

    run = validate(config=str(config))

    assert "missing" in run.row("groq", "gpt-imaginary").split()
    assert run.error is not None
    assert "groq/gpt-imaginary: missing" in str(run.error)


def test_a_missing_disabled_model_is_reported_but_does_not_fail(config: Path) -> None:
    add_model(config, "{name: gpt-old, provider: groq, alias: old, enabled: false}")

    run = validate(config=str(config))

    assert run.error is None, run.text
    assert "model disabled" in run.row("groq", "gpt-old")


def test_a_different_context_window_is_reported_with_both_values(config: Path) -> None:
    run = validate(config=str(config))

    assert run.row("groq", "llama-3.3-70b").split()[3:] == [
        "found",
        "128000",
        "131072",
        "context",
        "differs",
    ]
    assert "context differs" not in run.row("groq", "qwen3")
    assert "provider publishes no context window" in run.row("anthropic", "claude-haiku-4-5")


def test_write_saves_the_providers_context_windows_and_keeps_everything_else(
    config: Path, tmp_path: Path
) -> None:
    written = tmp_path / "refreshed.yaml"

    run = validate(config=str(config), write=str(written))

    assert run.error is None, run.text
    before = parse_config(config.read_text()).spec
    after = parse_config(written.read_text()).spec
    contexts = {m.name: m.context for m in after.models}
    assert contexts == {
        "claude-sonnet-4-5": 1_000_000,
        "claude-haiku-4-5": 200_000,  # the provider publishes none: kept
        "llama-3.3-70b": 131_072,
        "qwen3": 40_960,
    }
    assert [(m.name, m.alias, m.weight) for m in after.models] == [
        (m.name, m.alias, m.weight) for m in before.models
    ]
    assert after.providers == before.providers


# --- provider failures -------------------------------------------------------------------


def test_a_rejected_key_is_an_auth_failure_and_fails(
    config: Path, openai_fake: FakeUpstream
) -> None:
    openai_fake.models_script = Script(status=401)

    run = validate(config=str(config))

    assert "auth failed" in run.row("groq", "openai")
    assert "HTTP 401" in run.row("groq", "openai")
    assert "provider auth failed" in run.row("groq", "qwen3")
    assert run.error is not None
    assert "provider groq: auth failed" in str(run.error)


def test_a_closed_port_is_unreachable_and_fails(config: Path) -> None:
    local = f"  local:\n    type: openai\n    endpoint: http://127.0.0.1:{closed_port()}\n"
    config.write_text(config.read_text().replace("models:\n", local + "models:\n"))
    add_model(config, "{name: gemma, provider: local, alias: gemma}")

    run = validate(config=str(config), timeout=2)

    assert "unreachable" in run.row("local", "openai")
    assert "provider unreachable" in run.row("local", "gemma")
    assert "found" in run.row("groq", "qwen3")  # the others are still checked
    assert run.error is not None
    assert "provider local: unreachable" in str(run.error)


def test_a_provider_that_does_not_answer_in_time_is_unreachable(
    config: Path, anthropic_fake: FakeUpstream
) -> None:
    anthropic_fake.models_script = Script(hang=True)

    run = validate(config=str(config), timeout=0.3)

    assert "unreachable" in run.row("anthropic", "anthropic")
    assert run.error is not None


def test_another_http_error_is_reported_with_its_status(
    config: Path, anthropic_fake: FakeUpstream
) -> None:
    anthropic_fake.models_script = Script(status=500)

    run = validate(config=str(config))

    assert "HTTP error" in run.row("anthropic", "anthropic")
    assert "HTTP 500" in run.row("anthropic", "anthropic")
    assert run.error is not None


def test_an_unset_key_variable_is_reported_without_calling_the_provider(
    config: Path, anthropic_fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_TEST_KEY")

    run = validate(config=str(config))

    assert "env.ANTHROPIC_TEST_KEY is not set" in run.row("anthropic", "anthropic")
    assert listing_requests(anthropic_fake) == []
    assert run.error is not None


def test_a_disabled_provider_is_skipped_and_does_not_fail(
    config: Path, anthropic_fake: FakeUpstream
) -> None:
    config.write_text(
        config.read_text().replace(
            "env.ANTHROPIC_TEST_KEY\n", "env.ANTHROPIC_TEST_KEY\n    enabled: false\n"
        )
    )

    run = validate(config=str(config))

    assert run.error is None, run.text
    assert "disabled" in run.row("anthropic", "anthropic")
    assert "unchecked" in run.row("anthropic", "claude-haiku-4-5")
    assert listing_requests(anthropic_fake) == []


# --- dialects, pagination, dumps ---------------------------------------------------------


def test_anthropic_pages_are_followed_while_has_more(tmp_path: Path) -> None:
    with FakeUpstream(models=CLAUDE, models_page_size=2) as fake:
        path = tmp_path / "config.yaml"
        path.write_text(
            f"providers:\n  a:\n    endpoint: {fake.url}/v1\n"
            "models:\n  - {name: claude-x, provider: a}\n"
        )
        run = validate(config=str(path))
        queries = [parse_qs(r.query) for r in listing_requests(fake)]

    assert run.error is None, run.text
    assert "5" in run.row("a", "anthropic").split()
    assert [q.get("after_id") for q in queries] == [None, ["claude-sonnet-4-5"], ["claude-3-7"]]
    assert all(q["limit"] == ["1000"] for q in queries)


def test_each_dialect_gets_its_own_credentials(
    config: Path, anthropic_fake: FakeUpstream, openai_fake: FakeUpstream
) -> None:
    validate(config=str(config))

    (anthropic,) = listing_requests(anthropic_fake)
    (openai,) = listing_requests(openai_fake)
    assert anthropic.path == "/v1/models"
    assert anthropic.header("x-api-key") == ANTHROPIC_KEY
    assert anthropic.header("anthropic-version") == "2023-06-01"
    assert anthropic.header("authorization") is None
    assert openai.path == "/openai/v1/models"
    assert openai.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert openai.header("x-api-key") is None


def test_dump_provider_prints_the_raw_payload(config: Path) -> None:
    run = validate(config=str(config), dump_provider=["groq"])

    lines = run.out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("== groq (openai) GET "))
    end = lines.index("", start)
    payload = json.loads("\n".join(lines[start + 1 : end]))
    assert payload["object"] == "list"
    assert [m["id"] for m in payload["data"]] == ["llama-3.3-70b", "qwen3"]
    assert payload["data"][0]["context_window"] == 131_072
    assert not any(line.startswith("== anthropic") for line in lines)


def test_dump_provider_of_an_unknown_name_is_an_error(config: Path) -> None:
    run = validate(config=str(config), dump_provider=["nope"])

    assert run.error is not None
    assert "nope" in str(run.error)


def test_keys_never_appear_in_output_even_when_the_provider_echoes_them(
    config: Path, anthropic_fake: FakeUpstream, openai_fake: FakeUpstream
) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {OPENAI_KEY}"}}
    openai_fake.models_script = Script(status=401, error_body=echo)
    anthropic_fake.model_fields["claude-x"] = {"owner_note": f"issued to {ANTHROPIC_KEY}"}

    run = validate(config=str(config), dump_provider=["anthropic", "groq"])

    assert "Incorrect API key provided: [redacted]" in run.row("groq", "openai")
    assert "issued to [redacted]" in run.out
    assert ANTHROPIC_KEY not in run.text
    assert OPENAI_KEY not in run.text


# --- the database ------------------------------------------------------------------------


@pytest.fixture
def stored(db: None, config: Path) -> None:
    """The config imported: the literal Groq key is stored encrypted."""
    apply_config(parse_config(config.read_text()).spec)


@pytest.mark.usefixtures("stored")
def test_without_config_the_database_configuration_is_checked(openai_fake: FakeUpstream) -> None:
    run = validate()

    assert run.error is None, run.text
    assert "found" in run.row("groq", "llama-3.3-70b")
    (request,) = listing_requests(openai_fake)
    assert request.header("authorization") == f"Bearer {OPENAI_KEY}"  # decrypted
    assert OPENAI_KEY not in run.text


@pytest.mark.usefixtures("stored")
def test_apply_stores_the_providers_context_windows_and_bumps_the_version() -> None:
    version = ConfigVersion.current()

    run = validate(apply=True)

    assert run.error is None, run.text
    route = ModelRoute.objects.get(name="llama-3.3-70b")
    assert route.context == 131_072
    assert ModelRoute.objects.get(name="claude-haiku-4-5").context == 200_000
    assert ConfigVersion.current() == version + 1
    assert "changed model groq/llama-3.3-70b (llama): context 128000 → 131072" in run.out


@pytest.mark.usefixtures("stored")
def test_apply_with_nothing_to_change_keeps_the_version() -> None:
    validate(apply=True)
    version = ConfigVersion.current()

    run = validate(apply=True)

    assert "no context windows changed" in run.out
    assert ConfigVersion.current() == version


@pytest.mark.usefixtures("stored")
def test_without_apply_the_database_is_left_alone() -> None:
    version = ConfigVersion.current()

    validate()

    assert ModelRoute.objects.get(name="llama-3.3-70b").context == 128_000
    assert ConfigVersion.current() == version


def test_apply_with_a_config_file_is_refused(config: Path) -> None:
    run = validate(config=str(config), apply=True)

    assert run.error is not None
    assert "--apply" in str(run.error)


# --- reading listings (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "context"),
    [
        ({"id": "m", "context_length": 131072}, 131072),  # OpenRouter, Together
        ({"id": "m", "context_window": 131072}, 131072),  # Groq
        ({"id": "m", "max_input_tokens": 200000}, 200000),  # Anthropic
        ({"id": "m", "max_context_length": 32768}, 32768),  # Mistral
        ({"id": "m", "max_model_len": 8192}, 8192),  # vLLM
        ({"id": "m", "inputTokenLimit": 1048576}, 1048576),  # Google
        ({"id": "m", "top_provider": {"context_length": 65536}}, 65536),  # OpenRouter
        ({"id": "m", "context_length": "4096"}, 4096),
        ({"id": "m", "context_length": None, "context_window": 8192}, 8192),
        ({"id": "m", "context_length": True}, None),
        ({"id": "m", "context_length": 0}, None),
        ({"id": "m"}, None),
    ],
)
def test_context_windows_are_read_from_each_providers_field(entry: dict, context: int) -> None:
    assert context_of(entry) == context


def test_a_bare_list_of_models_is_accepted() -> None:
    page = parse_page("openai", [{"id": "a", "context_length": 8192}, {"name": "b"}, "junk"])

    assert [(m.id, m.context) for m in page.models] == [("a", 8192), ("b", None)]
    assert page.has_more is False
