"""Which (provider, model) pairs may serve a request, in which order, and why not the rest.

Pure: it takes the snapshot, what the request needs and the routes' measured health, and
returns a Plan. Order: weight (desc), then measured output TPS (desc; unmeasured routes
first, so they get measured), then TTFT (asc), then file order; routes measured below the
TPS threshold go after all others. Hard filters (disabled, no credentials) always apply;
soft filters (open circuit, context window, capabilities) are relaxed when they would
leave nothing, so the least bad candidates are still tried rather than failing blind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.health import CircuitState, HealthView
from gateway.snapshot import RouteConf, Snapshot
from gateway.tokens import estimate_input_tokens

UNMEASURED = HealthView(None, None, 0.0, 0, 0, 0, CircuitState.CLOSED, None, None)
ViewFn = Callable[[tuple[str, str]], HealthView]


@dataclass(frozen=True, slots=True)
class Skip:
    provider: str
    model: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.model, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Plan:
    requested: str
    candidates: tuple[RouteConf, ...]
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request asks of a route."""

    tokens: int = 0  # estimated input tokens + max_tokens
    images: bool = False
    thinking: bool = False
    tools: bool = False

    @classmethod
    def of(cls, payload: dict[str, Any]) -> Needs:
        max_tokens = payload.get("max_tokens")
        thinking = payload.get("thinking")
        return cls(
            tokens=estimate_input_tokens(payload)
            + (max_tokens if isinstance(max_tokens, int) else 0),
            images=_has_images(payload.get("messages")),
            thinking=isinstance(thinking, dict) and thinking.get("type") not in (None, "disabled"),
            tools=bool(payload.get("tools")),
        )


def _has_images(messages: Any) -> bool:
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image":
                return True
            inner = block.get("content") if block.get("type") == "tool_result" else None
            if isinstance(inner, list) and any(
                isinstance(b, dict) and b.get("type") == "image" for b in inner
            ):
                return True
    return False


def effective_weight(route: RouteConf) -> int:
    """The seed's rule: a weight of 0 or less counts as 1."""
    return route.weight if route.weight > 0 else 1


def _hard_reason(route: RouteConf) -> str | None:
    if not route.provider.enabled:
        return "provider disabled"
    if not route.enabled:
        return "model disabled"
    return route.provider.missing_credentials()


def _soft_reasons(route: RouteConf, needs: Needs, view: HealthView, now: float) -> list[str]:
    reasons = []
    if view.state is CircuitState.OPEN and view.open_until is not None:
        reasons.append(f"circuit open for {max(view.open_until - now, 0):.0f}s more")
    if route.context and needs.tokens > route.context:
        reasons.append(f"context {route.context} < {needs.tokens} tokens needed")
    if needs.images and not route.options.get("images", True):
        reasons.append("cannot read images")
    if needs.thinking and not route.thinking:
        reasons.append("no thinking")
    if needs.tools and not route.options.get("tools", True):
        reasons.append("cannot call tools")
    return reasons


def _order_key(route: RouteConf, view: HealthView, threshold: float) -> tuple:
    slow = view.tps is not None and view.tps < threshold
    tps = float("inf") if view.tps is None else view.tps
    ttft = view.ttft_ms if view.ttft_ms is not None else 0.0
    return (slow, -effective_weight(route), -tps, ttft, route.position, route.id)


def plan(
    snapshot: Snapshot,
    requested: str,
    *,
    needs: Needs = Needs(),
    view: ViewFn | None = None,
    now: float = 0.0,
    threshold: float | None = None,
    prefer: tuple[str, str] | None = None,
) -> Plan:
    """Candidates for `requested`, ordered, each (provider, model) at most once."""
    view = view or (lambda key: UNMEASURED)
    threshold = snapshot.tps_threshold if threshold is None else threshold
    matching = _unique(r for r in snapshot.routes if r.matches(requested))
    if needs.thinking and not any(r.thinking for r in matching):
        # no route is marked as thinking-capable: the flag says nothing here
        needs = replace(needs, thinking=False)
    skipped: list[Skip] = []
    clean: list[RouteConf] = []
    relaxed: list[tuple[int, RouteConf, list[str]]] = []
    for route in matching:
        hard = _hard_reason(route)
        if hard:
            skipped.append(Skip(route.provider.name, route.name, hard))
            continue
        reasons = _soft_reasons(route, needs, view(route.key), now)
        if reasons:
            relaxed.append((len(reasons), route, reasons))
        else:
            clean.append(route)
    clean.sort(key=lambda r: _order_key(r, view(r.key), threshold))
    if not clean and relaxed:  # least bad first: fewest reasons, then the usual order
        relaxed.sort(key=lambda t: (t[0], _order_key(t[1], view(t[1].key), threshold)))
        clean = [route for _, route, _ in relaxed]
        skipped += [
            Skip(r.provider.name, r.name, "tried anyway: " + "; ".join(why))
            for _, r, why in relaxed
        ]
    else:
        skipped += [Skip(r.provider.name, r.name, "; ".join(why)) for _, r, why in relaxed]
    if prefer is not None and not _healthy(view(prefer), threshold):
        prefer = None
    return Plan(requested, tuple(_with_affinity(clean, prefer)), tuple(skipped))


def _healthy(view: HealthView, threshold: float) -> bool:
    slow = view.tps is not None and view.tps < threshold
    return view.state is CircuitState.CLOSED and not slow


def _unique(routes: Any) -> list[RouteConf]:
    seen: set[tuple[str, str]] = set()
    out = []
    for route in routes:
        if route.key not in seen:
            seen.add(route.key)
            out.append(route)
    return out


def _with_affinity(
    candidates: Sequence[RouteConf], prefer: tuple[str, str] | None
) -> list[RouteConf]:
    """The session's previous route first, when it is still a clean candidate."""
    first = [r for r in candidates if r.key == prefer]
    return first + [r for r in candidates if r.key != prefer]


def anthropic_only(p: Plan) -> Plan:
    """The same plan restricted to Anthropic-dialect providers (count_tokens)."""
    kept = tuple(r for r in p.candidates if r.provider.dialect == "anthropic")
    dropped = tuple(
        Skip(r.provider.name, r.name, "not an Anthropic-dialect provider")
        for r in p.candidates
        if r.provider.dialect != "anthropic"
    )
    return Plan(p.requested, kept, p.skipped + dropped)


def prefer_anthropic(p: Plan, reason: str) -> Plan:
    """Drop OpenAI-dialect candidates for `reason` (a server tool), unless none else is left."""
    kept = tuple(r for r in p.candidates if r.provider.dialect == "anthropic")
    if not kept:
        return p
    dropped = tuple(Skip(r.provider.name, r.name, reason) for r in p.candidates if r not in kept)
    return Plan(p.requested, kept, p.skipped + dropped)
