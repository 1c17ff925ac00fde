from gateway.health import CircuitState, HealthView
from gateway.routing import Needs, plan
from gateway.snapshot import ProviderConf, RouteConf, Snapshot

ANTHROPIC = ProviderConf("anthropic", "anthropic", "https://a")
ZAI = ProviderConf("zai", "anthropic", "https://z")
OFF = ProviderConf("off", "anthropic", "https://o", enabled=False)


def route(provider: ProviderConf, name: str, alias: str, weight: int = 1, **kw) -> RouteConf:
    return RouteConf(
        id=hash((provider.name, name, alias)) % 1000,
        provider=provider,
        name=name,
        alias=alias,
        weight=weight,
        position=kw.pop("position", 0),
        **kw,
    )


def test_wildcards_match_anywhere_and_plain_aliases_match_exactly() -> None:
    r = route(ANTHROPIC, "x", "claude-*")
    assert r.matches("claude-sonnet-4") and not r.matches("my-claude-sonnet")
    assert route(ANTHROPIC, "x", "*haiku*").matches("claude-3-haiku-2024")
    assert route(ANTHROPIC, "x", "*opus").matches("big-opus")
    exact = route(ANTHROPIC, "x", "claude-3-opus")
    assert exact.matches("claude-3-opus") and not exact.matches("claude-3-opus-2")
    assert route(ANTHROPIC, "x", "a.b+c*").matches("a.b+c-1")  # regex characters are literal
    assert not route(ANTHROPIC, "x", "a.b*").matches("axb")


def test_candidates_are_ordered_by_weight_then_file_order() -> None:
    snap = Snapshot(
        routes=(
            route(ZAI, "glm", "claude-sonnet*", weight=3, position=0),
            route(ANTHROPIC, "sonnet", "claude-sonnet*", weight=5, position=1),
            route(ANTHROPIC, "deepseek", "claude-sonnet*", weight=3, position=2),
            route(ANTHROPIC, "haiku", "claude-haiku*", weight=9, position=3),
        )
    )
    result = plan(snap, "claude-sonnet-4-5")
    assert [r.name for r in result.candidates] == ["sonnet", "glm", "deepseek"]


def test_zero_or_negative_weight_counts_as_one() -> None:
    snap = Snapshot(
        routes=(
            route(ANTHROPIC, "neg", "m*", weight=-4, position=0),
            route(ZAI, "one", "m*", weight=1, position=1),
            route(ZAI, "two", "m*", weight=2, position=2),
        )
    )
    assert [r.name for r in plan(snap, "m").candidates] == ["two", "neg", "one"]


def test_disabled_routes_are_skipped_with_a_reason_and_pairs_tried_once() -> None:
    snap = Snapshot(
        routes=(
            route(OFF, "a", "m*", position=0),
            route(ANTHROPIC, "b", "m*", enabled=False, position=1),
            route(ZAI, "kimi", "m*", position=2),
            route(ZAI, "kimi", "m-*", position=3),
        )
    )
    result = plan(snap, "m-1")
    assert [r.name for r in result.candidates] == ["kimi"]
    assert [(s.provider, s.reason) for s in result.skipped] == [
        ("off", "provider disabled"),
        ("anthropic", "model disabled"),
    ]


def test_a_provider_whose_key_variable_is_unset_is_skipped(monkeypatch) -> None:
    monkeypatch.delenv("AP_TEST_UNSET_KEY", raising=False)
    monkeypatch.setenv("AP_TEST_SET_KEY", "sk-x")
    unset = ProviderConf("unset", "anthropic", "https://u", api_key_env="env.AP_TEST_UNSET_KEY")
    ready = ProviderConf("ready", "anthropic", "https://r", api_key_env="env.AP_TEST_SET_KEY")
    snap = Snapshot(
        routes=(route(unset, "a", "m*", position=0), route(ready, "b", "m*", position=1))
    )
    result = plan(snap, "m")
    assert [r.name for r in result.candidates] == ["b"]
    assert [s.reason for s in result.skipped] == ["env.AP_TEST_UNSET_KEY is not set"]


def health(tps=None, ttft=None, state=None, open_until=None) -> HealthView:
    return HealthView(tps, ttft, 0.0, 0, 0, 0, state or CircuitState.CLOSED, open_until, None)


def test_measured_routes_below_the_tps_threshold_go_after_all_others() -> None:
    routes = (
        route(ANTHROPIC, "slow-heavy", "m*", weight=9, position=0),
        route(ZAI, "fast", "m*", weight=1, position=1),
        route(ZAI, "new", "m*", weight=1, position=2),
        route(ANTHROPIC, "faster", "m*", weight=1, position=3),
    )
    views = {
        ("anthropic", "slow-heavy"): health(tps=12.0),
        ("zai", "fast"): health(tps=80.0, ttft=300.0),
        ("anthropic", "faster"): health(tps=120.0, ttft=900.0),
    }
    result = plan(Snapshot(routes=routes), "m", view=lambda k: views.get(k, health()))
    # weight first; unmeasured "new" gets its chance before measured ones of equal weight;
    # then TPS desc; the slow one, despite its weight, goes last
    assert [r.name for r in result.candidates] == ["new", "faster", "fast", "slow-heavy"]


def test_equal_tps_is_broken_by_ttft() -> None:
    routes = (route(ANTHROPIC, "a", "m*", position=0), route(ZAI, "b", "m*", position=1))
    views = {
        ("anthropic", "a"): health(tps=50.0, ttft=900.0),
        ("zai", "b"): health(tps=50.0, ttft=200.0),
    }
    assert [r.name for r in plan(Snapshot(routes=routes), "m", view=views.get).candidates] == [
        "b",
        "a",
    ]


def test_threshold_comes_from_the_argument_over_the_config() -> None:
    routes = (
        route(ANTHROPIC, "a", "m*", weight=5, position=0),
        route(ZAI, "b", "m*", weight=1, position=1),
    )
    views = {("anthropic", "a"): health(tps=30.0), ("zai", "b"): health(tps=35.0)}
    snap = Snapshot(routes=routes, tps_threshold=40.0)
    assert [r.name for r in plan(snap, "m", view=views.get).candidates] == ["a", "b"]
    assert [r.name for r in plan(snap, "m", view=views.get, threshold=32).candidates] == ["b", "a"]


def test_open_circuit_context_and_capabilities_skip_with_reasons() -> None:
    routes = (
        route(ANTHROPIC, "open", "m*", weight=9, position=0),
        route(ZAI, "small", "m*", weight=8, context=1000, position=1),
        route(ZAI, "blind", "m*", weight=7, position=2, options={"images": False}),
        route(ANTHROPIC, "ok", "m*", weight=1, position=3),
    )
    views = {("anthropic", "open"): health(state=CircuitState.OPEN, open_until=112.0)}
    needs = Needs(tokens=5000, images=True)
    result = plan(
        Snapshot(routes=routes), "m", needs=needs, view=lambda k: views.get(k, health()), now=100.0
    )
    assert [r.name for r in result.candidates] == ["ok"]
    assert {s.model: s.reason for s in result.skipped} == {
        "open": "circuit open for 12s more",
        "small": "context 1000 < 5000 tokens needed",
        "blind": "cannot read images",
    }


def test_when_filters_leave_nothing_the_least_bad_are_still_tried() -> None:
    routes = (
        route(
            ANTHROPIC,
            "tiny-blind",
            "m*",
            weight=9,
            context=10,
            position=0,
            options={"images": False},
        ),
        route(ZAI, "tiny", "m*", weight=1, context=10, position=1),
    )
    result = plan(Snapshot(routes=routes), "m", needs=Needs(tokens=500, images=True))
    assert [r.name for r in result.candidates] == ["tiny", "tiny-blind"]
    assert all(s.reason.startswith("tried anyway: ") for s in result.skipped)


def test_session_affinity_puts_the_previous_route_first_only_while_healthy() -> None:
    routes = (
        route(ANTHROPIC, "a", "m*", weight=5, position=0),
        route(ZAI, "b", "m*", weight=1, position=1),
    )
    snap = Snapshot(routes=routes)
    assert [r.name for r in plan(snap, "m", prefer=("zai", "b")).candidates] == ["b", "a"]
    slow = {("zai", "b"): health(tps=5.0)}
    assert [
        r.name
        for r in plan(
            snap, "m", prefer=("zai", "b"), view=lambda k: slow.get(k, health())
        ).candidates
    ] == ["a", "b"]


def test_needs_are_read_from_the_request() -> None:
    payload = {
        "max_tokens": 1000,
        "thinking": {"type": "adaptive"},
        "tools": [{"name": "t", "input_schema": {}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "x",
                        "content": [{"type": "image", "source": {"type": "url", "url": "u"}}],
                    }
                ],
            }
        ],
    }
    needs = Needs.of(payload)
    assert (needs.images, needs.thinking, needs.tools) == (True, True, True)
    assert needs.tokens > 1000
