"""Which targets each scenario measures, and with which model.

A target is a running service (bench/service.py) asked on one route dialect. LINEUP
lists them in table order, by the role the stack gave each service; adding a target is
one line there (and, for a new process, starting it in bench/stack.py or bench/peers/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.runner import Scenario, Target
from bench.service import FAST, SLOW
from bench.stack import Stack

ANTHROPIC, OPENAI = "anthropic", "openai"
DIRECT = "direct"
# The model a client asks for, by fake and route dialect (stack.CONFIG_TEMPLATE and the
# LiteLLM config route these names).
MODELS = {
    (FAST, ANTHROPIC): "bench-1",
    (FAST, OPENAI): "oai-1",
    (SLOW, ANTHROPIC): "real-1",
    (SLOW, OPENAI): "realoai-1",
}
HIGH_CONCURRENCY = 128


def every(scenario: Scenario) -> bool:
    return True


def high_load(scenario: Scenario) -> bool:
    """The scenarios where more workers can matter: c >= 128, and the realistic stream."""
    return scenario.concurrency >= HIGH_CONCURRENCY or scenario.upstream == SLOW


@dataclass(frozen=True)
class Entry:
    role: str  # the services it measures (service.Service.role)
    dialect: str = ANTHROPIC
    joins: Callable[[Scenario], bool] = every  # the scenarios it takes part in


LINEUP = (
    Entry("proxy"),  # the proxy on an Anthropic-dialect route: bytes relayed
    Entry("proxy", OPENAI),  # the same proxy on an OpenAI-dialect route: converted both ways
    Entry("proxy-server"),  # --servers: the same proxy on another ASGI server
    Entry("proxy-workers", joins=high_load),  # --workers-target N: `serve --workers N`
    Entry("nginx"),  # --peers: forwards bytes, no dialects
    Entry("litellm"),  # --peers
    Entry("litellm", OPENAI),  # --peers: LiteLLM converting to chat completions
)


def target_name(service_name: str, dialect: str) -> str:
    return service_name if dialect == ANTHROPIC else f"{service_name} openai"


def targets_for(scenario: Scenario, running: Stack) -> list[Target]:
    """Direct to the scenario's fake first, then every LINEUP entry that is running."""
    upstream = scenario.upstream
    targets = [Target(DIRECT, running.fake_ports[upstream], None, MODELS[upstream, ANTHROPIC])]
    for entry in LINEUP:
        if not entry.joins(scenario):
            continue
        for service in running.services.values():
            if service.role == entry.role:
                targets.append(
                    Target(
                        target_name(service.name, entry.dialect),
                        service.ports[upstream],
                        service.proc.pid,
                        model=MODELS[upstream, entry.dialect],
                        server=service.name,
                    )
                )
    return targets


def plan(scenarios: Sequence[Scenario], running: Stack) -> list[tuple[Scenario, Target, int]]:
    """Per scenario and round: direct first, then the others, in reverse order every other
    round (A B C, C B A, ...) so that drift on a shared machine hits them alike."""
    steps = []
    for sc in scenarios:
        direct, *others = targets_for(sc, running)
        for round_no in range(1, sc.rounds + 1):
            order = others if round_no % 2 else others[::-1]
            steps += [(sc, target, round_no) for target in (direct, *order)]
    return steps
