"""Graceful shutdown, shared by the server (gateway/server.py) and the request handlers.

On SIGTERM a process first drains: it keeps serving while /health answers 503
"draining", for DRAIN_SECONDS, so that a load balancer moves new traffic elsewhere. Then
it stops accepting connections and lets the requests in progress finish, for up to
SHUTDOWN_GRACE_SECONDS. Whatever is still running then is ended, not cut: a stream gets an
Anthropic `event: error` (overloaded_error, so clients retry elsewhere) and a request
that has not answered yet a 529. Then the request log is flushed and the process exits.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

ENDING = "the gateway is shutting down"  # the cancellation message handlers look for


@dataclass
class Lifecycle:
    draining: bool = False
    ending: bool = False
    requests: set[asyncio.Task[None]] = field(default_factory=set)

    def track(self, task: asyncio.Task[None]) -> None:
        """A request handler to end at the end of the grace period, if still running."""
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)

    def end_requests(self) -> int:
        """Ask every request still in progress to end now; returns how many there were."""
        self.ending = True
        running = [task for task in self.requests if not task.done()]
        for task in running:
            task.cancel(msg=ENDING)
        return len(running)


STATE = Lifecycle()


def ended_by_shutdown(task: asyncio.Task[None] | None) -> bool:
    """Whether the cancellation being handled is the end of the grace period. The caller
    then answers the client and finishes normally instead of being cut off."""
    return STATE.ending and task is not None and task.cancelling() > 0
