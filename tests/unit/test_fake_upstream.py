"""The fake upstream itself, over real loopback: what other tests rely on it to do."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.fakes.upstream import FIXTURES_DIR, FakeUpstream, Script, Synthetic

TEXT_STREAM = FIXTURES_DIR / "anthropic" / "anthropic-stream-text.sse"
HELLO = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as http:
        yield http


def sdk(fake: FakeUpstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="x", max_retries=0)


def post_messages(client: httpx.Client, model: str = "m", **extra: object) -> httpx.Response:
    return client.post("/v1/messages", json={**HELLO, "model": model, **extra})


def events_of(path: str) -> list[bytes]:
    data = (FIXTURES_DIR / path).read_bytes()
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def test_stream_fixture_is_replayed_byte_identical(client: httpx.Client) -> None:
    response = post_messages(client, stream=True)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.content == TEXT_STREAM.read_bytes()


def test_each_event_arrives_as_its_own_chunk_after_the_delays(fake: FakeUpstream) -> None:
    fake.script(None, Script(first_event_delay=0.25, event_delay=0.02))
    pieces: list[bytes] = []
    with httpx.Client(base_url=fake.url) as http:
        started = time.monotonic()
        with http.stream("POST", "/v1/messages", json={**HELLO, "stream": True}) as response:
            headers_after = time.monotonic() - started
            pieces.extend(response.iter_raw())
            first_after = time.monotonic() - started

    assert headers_after < 0.2
    assert first_after >= 0.25
    assert pieces == events_of("anthropic/anthropic-stream-text.sse")


def test_non_stream_returns_the_message_fixture_verbatim(client: httpx.Client) -> None:
    response = post_messages(client)

    fixture = FIXTURES_DIR / "anthropic" / "anthropic-message-text-tool-use.json"
    assert response.headers["content-type"] == "application/json"
    assert response.content == fixture.read_bytes()


def test_sdk_stream_accumulates_the_recorded_text(fake: FakeUpstream) -> None:
    with sdk(fake).messages.stream(**HELLO) as stream:  # type: ignore[arg-type]
        message = stream.get_final_message()

    assert [block.text for block in message.content if block.type == "text"] == ["Hello"]
    assert message.model == "claude-haiku-4-5-20251001"  # the fixture's, not rewritten


def test_status_fault_answers_an_anthropic_error_body(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    fake.script("busy", Script(status=529, headers={"retry-after": "3"}))

    response = post_messages(client, "busy", stream=True)

    assert response.status_code == 529
    assert response.headers["retry-after"] == "3"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "overloaded_error"


def test_status_fault_reaches_the_sdk_as_that_status(fake: FakeUpstream) -> None:
    fake.script(None, Script(status=429))

    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(fake).messages.create(**HELLO)  # type: ignore[arg-type]

    assert caught.value.status_code == 429


def test_reset_before_reply_is_a_connection_error(fake: FakeUpstream) -> None:
    fake.script(None, Script(reset_before_reply=True))

    with pytest.raises(anthropic.APIConnectionError):
        sdk(fake).messages.create(**HELLO)  # type: ignore[arg-type]

    assert fake.wait_closed("m")
    assert fake.connections[0].peer_closed is False


def test_hang_ends_in_a_client_timeout_and_the_close_is_seen(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    fake.script("slow", Script(hang=True))

    with pytest.raises(httpx.ReadTimeout):
        client.post("/v1/messages", json={**HELLO, "model": "slow"}, timeout=0.2)

    assert fake.wait_closed("slow", timeout=1.0)
    assert fake.connections[0].peer_closed is True


def test_client_leaving_mid_stream_is_recorded_at_once(fake: FakeUpstream) -> None:
    fake.script(None, Script(event_delay=5.0))
    with (
        httpx.Client(base_url=fake.url) as http,
        http.stream("POST", "/v1/messages", json={**HELLO, "stream": True}) as response,
    ):
        next(response.iter_raw())
    left_at = time.monotonic()

    assert fake.wait_closed("m", timeout=1.0)
    closed_at = fake.connections[0].closed_at
    assert closed_at is not None
    assert closed_at - left_at < 0.5


def test_reset_after_events_delivers_that_many_events_then_resets(fake: FakeUpstream) -> None:
    fake.script(None, Script(reset_after_events=3))
    pieces: list[bytes] = []

    with (
        pytest.raises(httpx.ReadError),
        httpx.Client(base_url=fake.url) as http,
        http.stream("POST", "/v1/messages", json={**HELLO, "stream": True}) as response,
    ):
        pieces.extend(response.iter_raw())

    assert pieces == events_of("anthropic/anthropic-stream-text.sse")[:3]


def test_hang_after_events_stalls_after_that_many_events(fake: FakeUpstream) -> None:
    fake.script(None, Script(hang_after_events=2))
    pieces: list[bytes] = []

    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.Client(base_url=fake.url, timeout=0.3) as http,
        http.stream("POST", "/v1/messages", json={**HELLO, "stream": True}) as response,
    ):
        pieces.extend(response.iter_raw())

    assert pieces == events_of("anthropic/anthropic-stream-text.sse")[:2]


def test_times_one_answers_once_then_the_default_comes_back(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    fake.script(None, Script(status=529, times=1))

    statuses = [post_messages(client).status_code for _ in range(3)]

    assert statuses == [529, 200, 200]


def test_queued_scripts_run_in_order_before_the_models_standing_one(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    fake.script("a", Script(status=503))
    fake.script("a", Script(status=429, times=1))
    fake.script("a", Script(status=500, times=2))

    statuses = [post_messages(client, "a").status_code for _ in range(5)]

    assert statuses == [429, 500, 500, 503, 503]
    assert post_messages(client, "b").status_code == 200


def test_synthetic_stream_parses_with_the_sdk_and_has_n_tokens(fake: FakeUpstream) -> None:
    fake.script("bench", Script(synthetic=Synthetic(tokens=20)))

    with sdk(fake).messages.stream(**{**HELLO, "model": "bench"}) as stream:  # type: ignore[arg-type]
        deltas = [event for event in stream if event.type == "text"]
        message = stream.get_final_message()

    assert len(deltas) == 20
    assert message.content[0].type == "text"
    assert message.content[0].text == " tok" * 20
    assert message.usage.output_tokens == 20
    assert message.model == "bench"


def test_synthetic_non_stream_message_matches_the_stream(fake: FakeUpstream) -> None:
    fake.script(None, Script(synthetic=Synthetic(tokens=3, text="x")))

    message = sdk(fake).messages.create(**HELLO)  # type: ignore[arg-type]

    assert message.content[0].type == "text"
    assert message.content[0].text == "xxx"
    assert message.usage.output_tokens == 3


def test_requests_are_recorded_with_prefix_query_and_header_case(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    body = json.dumps({**HELLO, "stream": True}).encode()
    response = client.post(
        "/api/anthropic/v1/messages?beta=true", content=body, headers={"X-Custom-Thing": "1"}
    )

    assert response.status_code == 200
    (seen,) = fake.requests
    assert (seen.method, seen.path, seen.query) == (
        "POST",
        "/api/anthropic/v1/messages",
        "beta=true",
    )
    assert ("X-Custom-Thing", "1") in seen.headers
    assert seen.body == body
    assert seen.model == "m"


def test_chunked_request_bodies_are_read(fake: FakeUpstream, client: httpx.Client) -> None:
    body = json.dumps(HELLO).encode()

    response = client.post("/v1/messages", content=iter([body[:10], body[10:]]))

    assert response.status_code == 200
    assert fake.requests[0].body == body
    assert fake.requests[0].header("transfer-encoding") == "chunked"


def test_keep_alive_reuses_one_connection(fake: FakeUpstream, client: httpx.Client) -> None:
    post_messages(client)
    post_messages(client, stream=True)

    assert len({r.connection_id for r in fake.requests}) == 1
    assert len(fake.connections) == 1


def test_count_tokens_is_a_quarter_of_the_body_length(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    response = client.post("/v1/messages/count_tokens?beta=true", content=b"x" * 101)

    assert response.json() == {"input_tokens": 25}


def test_models_lists_configured_and_scripted_models(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    fake.script("extra-model", Script())

    listing = client.get("/v1/models").json()

    ids = [model["id"] for model in listing["data"]]
    assert ids[-1] == "extra-model"
    assert listing["has_more"] is False
    assert (listing["first_id"], listing["last_id"]) == (ids[0], ids[-1])
    assert listing["data"][0]["type"] == "model"


def test_unknown_paths_are_404_in_anthropic_format(client: httpx.Client) -> None:
    response = client.get("/v1/nothing")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_openai_dialect_serves_chat_completions_and_its_model_list() -> None:
    with FakeUpstream(dialect="openai", models=["gpt-x"]) as fake:
        fake.script("syn", Script(synthetic=Synthetic(tokens=4)))
        client = openai.OpenAI(base_url=f"{fake.url}/v1", api_key="x", max_retries=0)
        listing = client.models.list()
        replay = client.chat.completions.create(model="gpt-x", messages=[], stream=True)
        replayed = [c for c in replay if c.choices and c.choices[0].delta.content]
        synthetic = client.chat.completions.create(model="syn", messages=[], stream=True)
        texts = [c.choices[0].delta.content for c in synthetic if c.choices]

    assert [model.id for model in listing.data] == ["gpt-x", "syn"]
    assert replayed  # openai-stream-text-include-usage.sse
    assert "".join(t or "" for t in texts) == " tok" * 4


def test_openai_status_fault_uses_the_openai_error_shape() -> None:
    with FakeUpstream(dialect="openai") as fake, httpx.Client(base_url=fake.url) as http:
        fake.script(None, Script(status=400))
        response = http.post("/v1/chat/completions", json={"model": "x", "messages": []})

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_reset_forgets_scripts_and_records(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(None, Script(status=500))
    post_messages(client)

    fake.reset()

    assert fake.requests == []
    assert fake.connections == []
    assert post_messages(client).status_code == 200


def test_wait_closed_is_false_without_a_matching_connection(fake: FakeUpstream) -> None:
    assert fake.wait_closed("never-requested", timeout=0.05) is False


def test_record_false_keeps_no_records_for_long_runs() -> None:
    with FakeUpstream(record=False) as fake, httpx.Client(base_url=fake.url) as http:
        assert post_messages(http).status_code == 200

    assert fake.requests == []
    assert fake.connections == []
