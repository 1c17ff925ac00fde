"""The providers page: staff only, secrets write-only, every change bumps the version."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

from gateway import vault
from gateway.models import ConfigVersion, ModelRoute, Provider
from tests import builders
from tests.fakes.upstream import FakeUpstream, Script
from tests.live import LiveProxy

LITERAL = "sk-dashboard-canary-5ecret"
PASSWORD = "pw-tests-0nly"


def make_user(name: str = "admin", staff: bool = True) -> AbstractBaseUser:
    return get_user_model().objects.create_user(name, password=PASSWORD, is_staff=staff)


@pytest.fixture
def staff(db: None) -> Client:
    client = Client()
    client.force_login(make_user())
    return client


@pytest.fixture
def acme(db: None) -> Provider:
    provider = builders.provider("acme", "https://acme.example", key=LITERAL)
    builders.route(provider, "acme-large", alias="claude-*", weight=2, context=200_000)
    return provider


def provider_form(**overrides: str) -> dict[str, str]:
    data = {
        "name": "newco",
        "type": "anthropic",
        "endpoint": "https://newco.example",
        "api_key": "",
        "enabled": "on",
        "options": "",
    }
    return {**data, **overrides}


def model_form(**overrides: str) -> dict[str, str]:
    data = {"name": "m1", "alias": "", "context": "1000", "weight": "1", "enabled": "on"}
    return {**data, **overrides}


def urls_of(provider: Provider) -> list[str]:
    route = provider.routes.get()
    return [
        "/dashboard/providers/",
        "/dashboard/providers/new/",
        f"/dashboard/providers/{provider.pk}/edit/",
        f"/dashboard/providers/{provider.pk}/delete/",
        f"/dashboard/providers/{provider.pk}/models/new/",
        f"/dashboard/models/{route.pk}/edit/",
        f"/dashboard/models/{route.pk}/delete/",
    ]


def test_every_page_renders_for_staff(staff: Client, acme: Provider) -> None:
    for url in urls_of(acme):
        response = staff.get(url)
        assert response.status_code == 200, url
        assert b'<label for="id_' in response.content or url.endswith(("/providers/", "/delete/"))
    listing = staff.get("/dashboard/providers/").content.decode()
    assert "acme-large" in listing and "claude-*" in listing and "200000" in listing
    assert 'class="table-wrap"' in listing


def test_pages_send_anonymous_visitors_to_login_and_refuse_non_staff(
    acme: Provider,
) -> None:
    guest = Client()
    guest.force_login(make_user("guest", staff=False))
    for url in urls_of(acme):
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and "/dashboard/login/" in anonymous["Location"]
        assert guest.get(url).status_code == 403, url
    toggle = f"/dashboard/providers/{acme.pk}/toggle/"
    assert Client().post(toggle).status_code == 302
    assert guest.post(toggle).status_code == 403
    assert Provider.objects.get(pk=acme.pk).enabled


def test_a_literal_key_is_stored_encrypted_and_never_shown_again(staff: Client) -> None:
    before = ConfigVersion.current()
    response = staff.post("/dashboard/providers/new/", provider_form(api_key=LITERAL))
    assert response.status_code == 302
    provider = Provider.objects.get(name="newco")
    assert LITERAL not in provider.api_key_encrypted
    assert vault.decrypt(provider.api_key_encrypted) == LITERAL
    assert provider.api_key_env == ""
    assert ConfigVersion.current() > before
    pages = {
        "list": staff.get("/dashboard/providers/"),
        "edit": staff.get(f"/dashboard/providers/{provider.pk}/edit/"),
        "download": staff.get("/dashboard/config/download/"),
    }
    for name, page in pages.items():
        assert page.status_code == 200, name
        assert LITERAL not in page.content.decode(), name
    assert "•••• (encrypted)" in pages["list"].content.decode()
    assert provider.api_key_encrypted not in pages["edit"].content.decode()


def test_an_env_reference_is_stored_and_shown_as_is(staff: Client) -> None:
    staff.post("/dashboard/providers/new/", provider_form(api_key="env.NEWCO_KEY"))
    provider = Provider.objects.get(name="newco")
    assert (provider.api_key_env, provider.api_key_encrypted) == ("env.NEWCO_KEY", "")
    assert "env.NEWCO_KEY" in staff.get("/dashboard/providers/").content.decode()
    assert (
        "env.NEWCO_KEY" in staff.get(f"/dashboard/providers/{provider.pk}/edit/").content.decode()
    )


def test_an_empty_key_on_edit_keeps_the_current_key(staff: Client, acme: Provider) -> None:
    token = acme.api_key_encrypted
    data = provider_form(name="acme", endpoint="https://acme-2.example")
    response = staff.post(f"/dashboard/providers/{acme.pk}/edit/", data)
    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.endpoint == "https://acme-2.example"
    assert acme.api_key_encrypted == token


def test_a_stored_key_can_be_removed(staff: Client, acme: Provider) -> None:
    data = provider_form(name="acme", endpoint=acme.endpoint, clear_api_key="on")
    staff.post(f"/dashboard/providers/{acme.pk}/edit/", data)
    acme.refresh_from_db()
    assert (acme.api_key_env, acme.api_key_encrypted) == ("", "")


def test_toggles_flip_enabled_and_bump_the_version(staff: Client, acme: Provider) -> None:
    route = acme.routes.get()
    before = ConfigVersion.current()
    htmx = staff.post(f"/dashboard/providers/{acme.pk}/toggle/", headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and b"<form" in htmx.content and b"<html" not in htmx.content
    assert b"disabled" in htmx.content
    assert not Provider.objects.get(pk=acme.pk).enabled
    plain = staff.post(f"/dashboard/models/{route.pk}/toggle/")
    assert plain.status_code == 302
    assert not ModelRoute.objects.get(pk=route.pk).enabled
    assert ConfigVersion.current() == before + 2
    assert staff.get(f"/dashboard/models/{route.pk}/toggle/").status_code == 405


def test_deleting_needs_the_confirmation_step(staff: Client, acme: Provider) -> None:
    url = f"/dashboard/providers/{acme.pk}/delete/"
    page = staff.get(url).content.decode()
    assert "acme-large" in page and 'name="confirm"' in page
    staff.post(url)
    assert Provider.objects.filter(pk=acme.pk).exists()
    before = ConfigVersion.current()
    assert staff.post(url, {"confirm": "yes"}).status_code == 302
    assert not Provider.objects.filter(pk=acme.pk).exists()
    assert not ModelRoute.objects.exists()
    assert ConfigVersion.current() > before


def test_deleting_a_model_keeps_its_provider(staff: Client, acme: Provider) -> None:
    route = acme.routes.get()
    before = ConfigVersion.current()
    staff.post(f"/dashboard/models/{route.pk}/delete/", {"confirm": "yes"})
    assert not ModelRoute.objects.exists() and Provider.objects.filter(pk=acme.pk).exists()
    assert ConfigVersion.current() > before


def test_a_bad_provider_option_is_shown_with_its_path_and_changes_nothing(
    staff: Client, acme: Provider
) -> None:
    before, stored = ConfigVersion.current(), dict(acme.options)
    url = f"/dashboard/providers/{acme.pk}/edit/"
    cases = {
        "connectTimeout: soon": "options.connectTimeout",
        "bogus: 1": "options.bogus",
        "maxTokensField: max_tokens": "options.maxTokensField",
        "headers: {x-extra: 5}": "options.headers.x-extra",
        "[not, a, mapping]": "options: expected a mapping",
    }
    for text, path in cases.items():
        data = provider_form(name="acme", endpoint="https://elsewhere.example", options=text)
        response = staff.post(url, data)
        assert response.status_code == 200, text
        assert path in response.content.decode(), text
    acme.refresh_from_db()
    assert acme.endpoint == "https://acme.example" and acme.options == stored
    assert ConfigVersion.current() == before


def test_a_bad_endpoint_or_key_reference_is_refused(staff: Client) -> None:
    for field, value in (("endpoint", "ftp://files.example"), ("api_key", "env.1BAD")):
        response = staff.post("/dashboard/providers/new/", provider_form(**{field: value}))
        assert response.status_code == 200
        assert b'class="error"' in response.content, field
    assert not Provider.objects.exists()


def test_options_are_stored_as_the_config_file_stores_them(staff: Client) -> None:
    options = "connectTimeout: 2s\nheaders:\n  x-api-key: hdr-canary-5ecret\n  x-team: blue\n"
    staff.post("/dashboard/providers/new/", provider_form(options=options))
    provider = Provider.objects.get(name="newco")
    sealed = provider.options["headers"]["x-api-key"]
    assert provider.options == {
        "connectTimeout": 2.0,
        "headers": {"x-api-key": sealed, "x-team": "blue"},  # credentials encrypted at rest
    }
    assert sealed.startswith("encrypted:") and vault.open_value(sealed) == "hdr-canary-5ecret"
    edit = staff.get(f"/dashboard/providers/{provider.pk}/edit/").content.decode()
    assert "connectTimeout: 2s" in edit and "x-team: blue" in edit
    assert "hdr-canary-5ecret" not in edit and sealed not in edit
    masked = "connectTimeout: 3s\nheaders:\n  x-api-key: ••••\n  x-team: blue\n"
    staff.post(f"/dashboard/providers/{provider.pk}/edit/", provider_form(options=masked))
    provider.refresh_from_db()
    assert provider.options["connectTimeout"] == 3.0
    assert provider.options["headers"]["x-api-key"] == sealed  # kept as stored


def test_models_are_created_and_edited_with_validated_options(
    staff: Client, acme: Provider
) -> None:
    before = ConfigVersion.current()
    url = f"/dashboard/providers/{acme.pk}/models/new/"
    response = staff.post(url, model_form(options='{"hedgeAfter": "2s", "tools": false}'))
    assert response.status_code == 302
    route = ModelRoute.objects.get(name="m1")
    assert (route.alias, route.context, route.provider_id) == ("m1", 1000, acme.pk)
    assert route.options == {"hedgeAfter": 2.0, "tools": False}
    assert ConfigVersion.current() > before
    bad = staff.post(f"/dashboard/models/{route.pk}/edit/", model_form(options="idleTimeout: -1"))
    assert b"options.idleTimeout" in bad.content
    negative = staff.post(f"/dashboard/models/{route.pk}/edit/", model_form(context="-5"))
    assert negative.status_code == 200 and b'class="error"' in negative.content
    route.refresh_from_db()
    assert route.context == 1000
    edit = staff.post(f"/dashboard/models/{route.pk}/edit/", model_form(alias="m-*", weight="3"))
    assert edit.status_code == 302
    route.refresh_from_db()
    assert (route.alias, route.weight) == ("m-*", 3)


def test_a_duplicate_route_is_refused(staff: Client, acme: Provider) -> None:
    data = model_form(name="acme-large", alias="claude-*")
    response = staff.post(f"/dashboard/providers/{acme.pk}/models/new/", data)
    assert response.status_code == 200 and b"already has a route" in response.content
    assert acme.routes.count() == 1


def test_posts_without_a_csrf_token_are_refused(acme: Provider) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user())
    route = acme.routes.get()
    for url, data in (
        ("/dashboard/providers/new/", provider_form()),
        (f"/dashboard/providers/{acme.pk}/toggle/", {}),
        (f"/dashboard/providers/{acme.pk}/delete/", {"confirm": "yes"}),
        (f"/dashboard/models/{route.pk}/toggle/", {}),
        (f"/dashboard/providers/{acme.pk}/test/", {"route": str(route.pk)}),
    ):
        assert client.post(url, data).status_code == 403, url
    assert Provider.objects.get(pk=acme.pk).enabled and Provider.objects.count() == 1


def test_the_test_button_says_when_there_is_no_runtime(staff: Client, acme: Provider) -> None:
    route = acme.routes.get()
    response = staff.post(
        f"/dashboard/providers/{acme.pk}/test/",
        {"route": str(route.pk)},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and b"<html" not in response.content
    assert b"no gateway runtime" in response.content


# --- the test button over real loopback ---------------------------------------------------


def _logged_in(proxy: LiveProxy) -> httpx.Client:
    make_user("watcher")
    client = httpx.Client(base_url=proxy.url, timeout=30)
    token = client.get("/dashboard/login/").cookies["csrftoken"]
    client.post(
        "/dashboard/login/",
        data={"username": "watcher", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"referer": f"{proxy.url}/dashboard/login/"},
    )
    return client


def _press_test(client: httpx.Client, provider: Provider, route: ModelRoute) -> str:
    response = client.post(
        f"/dashboard/providers/{provider.pk}/test/",
        data={"route": str(route.pk), "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    return response.text


def test_the_test_button_sends_a_tiny_request_to_that_route_only(
    proxy: LiveProxy, upstream: FakeUpstream
) -> None:
    provider = builders.provider("acme", upstream.url)
    builders.route(provider, "other-model", alias="claude-*", weight=9)
    route = builders.route(provider, "acme-model", alias="claude-*")
    client = _logged_in(proxy)
    html = _press_test(client, provider, route)
    assert "HTTP 200" in html and "TTFT" in html and "ms" in html
    assert 'data-probe="ok"' in html
    [sent] = upstream.requests
    assert sent.json["model"] == "acme-model" and sent.json["stream"] is True
    assert sent.json["max_tokens"] == 16
    assert sent.header("x-api-key") == builders.UPSTREAM_SECRET


def test_the_test_button_shows_the_upstream_error(proxy: LiveProxy, upstream: FakeUpstream) -> None:
    provider = builders.provider("acme", upstream.url)
    route = builders.route(provider, "acme-model")
    upstream.script("acme-model", Script(status=503))
    html = _press_test(_logged_in(proxy), provider, route)
    assert "HTTP 503" in html and 'data-probe="error"' in html
    assert builders.UPSTREAM_SECRET not in html
