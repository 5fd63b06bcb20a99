"""Compiling the agent router's kernel ahead of traffic.

`AgentRouter.warm` runs the kernel (and nothing else) once per shape: no decision is made,
so nothing is remembered, no half-open agent's probe permit is used and nothing is drawn
from the seeded offset stream (a warmed router routes as an unwarmed one with the same
seed). The router's lock is held only to read the snapshot, so routing calls go on while
a shape compiles: a server builds its router with `warm=False`, warms batch 1, serves,
and warms the rest in the background.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tinydancer.agents.batch import prepare_inputs
from tinydancer.agents.requests import REQ
from tinydancer.agents.types import AgentRequest
from tinydancer.errors import AgentsUnavailableError, NoEligibleAgentError

if TYPE_CHECKING:
    from tinydancer.agents.router import AgentRouter

__all__ = ["WARM_BATCHES", "WARM_STEPS", "warm_kernel"]

WARM_BATCHES = (1, 2, 4, 8, 16, 32)  # request batch sizes (one message each)
WARM_STEPS = (2, 4, 8)  # conversation lengths (one request)


def warm_kernel(router: AgentRouter, batches: Sequence[int], steps: Sequence[int]) -> None:
    """Compile and run the kernel for these batch sizes and conversation lengths."""
    if len(router.registry) == 0:
        return
    model = router._model
    dim = model.model.embedding.dim
    probe = np.zeros(dim, np.float32)
    probe[0] = 1.0
    shapes = [[AgentRequest(embedding=probe)] * batch for batch in batches]
    shapes += [[AgentRequest(messages=[probe] * length)] for length in steps]
    try:
        for requests in shapes:
            with router._lock:  # the snapshot only
                snap = router.snapshot()
            if not snap.names:
                return
            messages, rows, eligible = prepare_inputs(
                requests, snap, dim, router.config.max_messages
            )
            rows[:, REQ["offset"]] = 0  # the result is unused: no draw from the seeded stream
            router._score(model, snap, messages, rows, eligible, seeded=False)
    except (NoEligibleAgentError, AgentsUnavailableError):
        pass  # nothing routable yet; shapes compile on first use
