from gateway.routing import plan
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
