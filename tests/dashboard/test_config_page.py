"""The config page: upload, diff with secrets masked, apply or discard, download."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import Client

from dashboard.config_diff import MASK, diff_configs
from dashboard.views.config import PENDING
from gateway import vault
from gateway.config_db import apply_config, export_config
from gateway.config_file import ClientKeySpec, ConfigSpec, ModelSpec, ProviderSpec, parse_config
from gateway.limits import KeyLimits
from gateway.models import ConfigVersion, ModelRoute, Provider
from tests.config_samples import CURRENT, NEW_SECRET, STORED_SECRET

ROTATED_SECRET = "sk-acme-rotated-canary"
PASSWORD = "pw-tests-0nly"


UPLOAD = f"""
providers:
  acme:
    type: anthropic
    endpoint: https://acme-2.example
    apiKey: {ROTATED_SECRET}
  gamma:
    type: anthropic
    endpoint: https://gamma.example
    apiKey: {NEW_SECRET}
models:
  - name: acme-large
    provider: acme
    alias: claude-*
    context: 100000
  - name: gamma-model
    provider: gamma
routing:
  hedgeAfter: 2s
"""

pytestmark = pytest.mark.django_db


def make_user(name: str = "admin", staff: bool = True) -> AbstractBaseUser:
    return get_user_model().objects.create_user(name, password=PASSWORD, is_staff=staff)


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(make_user())
    return client


@pytest.fixture
def current() -> None:
    apply_config(parse_config(CURRENT).spec)


def preview(client: Client, text: str) -> HttpResponse:
    return client.post("/dashboard/config/preview/", {"config_text": text})


def diff_rows(html: str, kind: str) -> list[str]:
    marker = f'<tr data-diff="{kind}">'
    return [part.split("</tr>")[0] for part in html.split(marker)[1:]]


def test_the_pages_render_for_staff_only(staff: Client, current: None) -> None:
    page = staff.get("/dashboard/config/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'for="id_config_file"' in html and 'for="id_config_text"' in html
    assert "/dashboard/config/download/" in html
    assert staff.get("/dashboard/config/preview/").status_code == 302  # nothing pending
    guest = Client()
    guest.force_login(make_user("guest", staff=False))
    for url in ("/dashboard/config/", "/dashboard/config/preview/", "/dashboard/config/download/"):
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and "/dashboard/login/" in anonymous["Location"]
        assert guest.get(url).status_code == 403, url
    assert guest.post("/dashboard/config/apply/").status_code == 403


def test_the_preview_shows_what_would_change_with_secrets_masked(
    staff: Client, current: None
) -> None:
    version = ConfigVersion.current()
    response = preview(staff, UPLOAD)
    assert response.status_code == 200
    html = response.content.decode()
    added, removed, changed = (diff_rows(html, k) for k in ("added", "removed", "changed"))
    assert any("provider gamma" in row for row in added)
    assert any("model gamma/gamma-model (gamma-model)" in row for row in added)
    assert any("provider beta" in row for row in removed)
    assert any("model beta/beta-small (gpt-*)" in row for row in removed)
    [acme] = [row for row in changed if "provider acme" in row]
    assert "https://acme.example → https://acme-2.example" in acme and "apiKey" in acme
    assert any("context: 200000 → 100000" in row for row in changed)
    assert any("hedgeAfter: (unset) → 2s" in row for row in changed)
    for secret in (STORED_SECRET, ROTATED_SECRET, NEW_SECRET):
        assert secret not in html
    assert MASK in html
    assert ConfigVersion.current() == version and Provider.objects.filter(name="beta").exists()
    assert staff.session[PENDING] == UPLOAD


def test_an_unchanged_file_shows_no_changes(staff: Client, current: None) -> None:
    html = preview(staff, CURRENT).content.decode()
    assert "No changes" in html and "data-diff" not in html
    exported = staff.get("/dashboard/config/download/").content.decode()
    assert "No changes" in preview(staff, exported).content.decode()


def test_apply_changes_the_database_and_shows_the_report(staff: Client, current: None) -> None:
    version = ConfigVersion.current()
    preview(staff, UPLOAD)
    response = staff.post("/dashboard/config/apply/", {"action": "apply"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "added provider gamma" in html and "removed provider beta" in html
    assert set(Provider.objects.values_list("name", flat=True)) == {"acme", "gamma"}
    acme = Provider.objects.get(name="acme")
    assert acme.endpoint == "https://acme-2.example"
    assert vault.decrypt(acme.api_key_encrypted) == ROTATED_SECRET
    assert ModelRoute.objects.get(name="acme-large").context == 100_000
    assert ConfigVersion.current() > version
    assert PENDING not in staff.session
    assert staff.get("/dashboard/config/preview/").status_code == 302


def test_discard_changes_nothing(staff: Client, current: None) -> None:
    version = ConfigVersion.current()
    preview(staff, UPLOAD)
    response = staff.post("/dashboard/config/apply/", {"action": "discard"})
    assert response.status_code == 302
    assert PENDING not in staff.session
    assert ConfigVersion.current() == version and Provider.objects.filter(name="beta").exists()


def test_a_file_upload_is_previewed_like_pasted_text(staff: Client, current: None) -> None:
    upload = SimpleUploadedFile("new.yaml", UPLOAD.encode(), content_type="application/yaml")
    response = staff.post("/dashboard/config/preview/", {"config_file": upload})
    assert response.status_code == 200 and diff_rows(response.content.decode(), "added")
    assert staff.session[PENDING] == UPLOAD


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "providers:\n  acme:\n    endpoint: https://x.example\n    bogus: 1\n"
            "    apiKey: sk-invalid-canary\n",
            "providers.acme.bogus: unknown key",
        ),
        ("models:\n  - name: m\n    provider: nobody\n", "models[0].provider: unknown provider"),
        ("providers: [\n", "YAML syntax error"),
    ],
)
def test_an_invalid_file_shows_the_path_error_and_changes_nothing(
    staff: Client, current: None, text: str, message: str
) -> None:
    version = ConfigVersion.current()
    response = preview(staff, text)
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html and "Nothing was changed" in html
    assert "sk-invalid-canary" not in html  # the pasted text is not shown back
    assert PENDING not in staff.session
    assert ConfigVersion.current() == version and Provider.objects.count() == 2


def test_an_error_found_while_applying_changes_nothing(staff: Client, current: None) -> None:
    version = ConfigVersion.current()
    text = UPLOAD.replace(f"apiKey: {NEW_SECRET}", "apiKey: encrypted:not-a-token")
    assert preview(staff, text).status_code == 200
    response = staff.post("/dashboard/config/apply/", {"action": "apply"})
    assert response.status_code == 400
    assert "providers.gamma.apiKey" in response.content.decode()
    assert ConfigVersion.current() == version
    assert set(Provider.objects.values_list("name", flat=True)) == {"acme", "beta"}


def test_an_empty_upload_is_refused(staff: Client) -> None:
    response = staff.post("/dashboard/config/preview/", {"config_text": "  "})
    assert response.status_code == 400 and b"paste its text" in response.content


def test_the_download_round_trips_through_parse_config(staff: Client, current: None) -> None:
    response = staff.get("/dashboard/config/download/")
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    text = response.content.decode()
    assert STORED_SECRET not in text and "env.BETA_KEY" in text
    assert parse_config(text).spec == export_config()


def test_posts_without_a_csrf_token_are_refused(current: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user())
    assert client.post("/dashboard/config/preview/", {"config_text": UPLOAD}).status_code == 403
    assert client.post("/dashboard/config/apply/", {"action": "apply"}).status_code == 403
    assert Provider.objects.filter(name="beta").exists()


# --- the diff itself (pure) ---------------------------------------------------------------


def _spec(api_key: str, headers: dict[str, str] | None = None) -> ConfigSpec:
    options = {"headers": headers} if headers else {}
    provider = ProviderSpec("acme", "https://acme.example", api_key=api_key, options=options)
    return ConfigSpec(providers=(provider,), models=(ModelSpec("m", "acme", "m"),))


def test_the_diff_shows_env_references_and_masks_literals() -> None:
    [line] = diff_configs(_spec("env.OLD"), _spec("sk-literal-canary")).lines
    assert line.detail == f"apiKey: env.OLD → {MASK}"
    [line] = diff_configs(_spec("sk-one"), _spec("sk-two")).lines
    assert "sk-" not in line.detail and MASK in line.detail


def test_the_diff_asks_reveal_whether_a_key_changed() -> None:
    def reveal(key: str) -> str:
        return key.removeprefix("encrypted:")

    assert diff_configs(_spec("encrypted:sk-same"), _spec("sk-same"), reveal=reveal).empty


def test_the_diff_masks_credential_headers() -> None:
    old = _spec("", {"x-api-key": "hdr-old-canary", "x-team": "blue"})
    new = _spec("", {"x-api-key": "hdr-new-canary", "x-team": "red"})
    [line] = diff_configs(old, new).lines
    assert "canary" not in line.detail and '"x-team": "red"' in line.detail


def test_the_diff_shows_changed_key_limits_without_the_key() -> None:
    def keyed(**limits: int) -> ConfigSpec:
        key = ClientKeySpec("apiKeys[0]", "literal", "sk-client-canary", KeyLimits(**limits))
        return ConfigSpec(client_keys=(key,))

    [line] = diff_configs(keyed(concurrent=4), keyed(concurrent=2, tokens_per_day=9)).lines
    assert (line.kind, line.subject) == ("changed", "key apiKeys[0]")
    assert line.detail == "limits concurrent 4 → concurrent 2, tokensPerDay 9"
    [added] = diff_configs(ConfigSpec(), keyed(requests_per_minute=60)).lines
    assert added.detail == "•••• (stored as a hash), limits requestsPerMinute 60"
    assert "canary" not in line.detail + added.detail
