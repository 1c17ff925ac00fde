"""Which (provider, model) pairs may serve a request, in which order, and why not the rest.

Pure: it takes the snapshot and the requested model name and returns a Plan.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.snapshot import RouteConf, Snapshot


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


def effective_weight(route: RouteConf) -> int:
    """The seed's rule: a weight of 0 or less counts as 1."""
    return route.weight if route.weight > 0 else 1


def _skip_reason(route: RouteConf) -> str | None:
    if not route.provider.enabled:
        return "provider disabled"
    if not route.enabled:
        return "model disabled"
    return route.provider.missing_credentials()


def plan(snapshot: Snapshot, requested: str) -> Plan:
    """Matching routes ordered by weight (desc), then file order; each pair at most once."""
    matching = [route for route in snapshot.routes if route.matches(requested)]
    matching.sort(key=lambda r: (-effective_weight(r), r.position, r.id))
    candidates: list[RouteConf] = []
    skipped: list[Skip] = []
    seen: set[tuple[str, str]] = set()
    for route in matching:
        if route.key in seen:
            continue
        seen.add(route.key)
        reason = _skip_reason(route)
        if reason:
            skipped.append(Skip(route.provider.name, route.name, reason))
        else:
            candidates.append(route)
    return Plan(requested, tuple(candidates), tuple(skipped))


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
