"""Tiny Dancer: decide in microseconds who should serve each AI request.

    import tinydancer as td

    router = td.Router()  # candidate mode, the shipped model
    response = router.route(td.RoutingRequest(query_embedding=q, candidates=batch))

    agents = td.AgentRouter(td.AgentRegistry(), td.CircuitBreaker())  # agent mode
    decision = agents.route(td.AgentRequest(embedding=e, optimize_for="cost"))

    gateway = td.Gateway(agents, encoder)  # OpenAI-compatible chat completions, in any asyncio app

Every name a user writes is here, as `td.<Name>`; the subpackages (`tinydancer.model`,
`.candidates`, `.agents`, `.text`, `.gateway`, `.history`, `.evaluation`, `.training`, `.cli`) hold the
implementation. Importing the package is cheap and has no side effects: JAX, pydantic
and the model code load on first use of a name below (PEP 562 lazy attributes), and
nothing is pinned, configured or read from the environment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tinydancer.errors import (
    AgentError,
    AgentsUnavailableError,
    ConfigError,
    DuplicateAgentError,
    EmbeddingError,
    FeedbackError,
    GatewayError,
    HistoryError,
    InvalidRequestError,
    ModelFileError,
    NoEligibleAgentError,
    TinyDancerError,
    UnknownAgentError,
)

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "Router": "tinydancer.candidates.router",
    "RouterStats": "tinydancer.candidates.router",
    "RouterConfig": "tinydancer.candidates.config",
    "FeatureConfig": "tinydancer.candidates.features",
    "BatchScores": "tinydancer.candidates.types",
    "Candidate": "tinydancer.candidates.types",
    "CandidateBatch": "tinydancer.candidates.types",
    "RoutingDecision": "tinydancer.candidates.types",
    "RoutingRequest": "tinydancer.candidates.types",
    "RoutingResponse": "tinydancer.candidates.types",
    "AgentRouter": "tinydancer.agents.router",
    "AgentRouterConfig": "tinydancer.agents.config",
    "ColumnarDecisions": "tinydancer.agents.router",
    "AgentRequest": "tinydancer.agents.types",
    "AgentDecision": "tinydancer.agents.types",
    "Alternative": "tinydancer.agents.types",
    "Constraints": "tinydancer.agents.types",
    "OBJECTIVES": "tinydancer.agents.types",
    "Agent": "tinydancer.agents.agent",
    "AgentType": "tinydancer.agents.agent",
    "CostModel": "tinydancer.agents.agent",
    "Endpoint": "tinydancer.agents.endpoint",
    "Gateway": "tinydancer.gateway.gateway",
    "GatewayConfig": "tinydancer.gateway.config",
    "AgentRegistry": "tinydancer.agents.registry",
    "AgentMetrics": "tinydancer.agents.registry",
    "BanditConfig": "tinydancer.agents.bandit",
    "CircuitBreaker": "tinydancer.agents.breaker",
    "BreakerConfig": "tinydancer.agents.breaker",
    "BreakerState": "tinydancer.agents.breaker",
    "Transition": "tinydancer.agents.breaker",
    "FastGRNNConfig": "tinydancer.model.fastgrnn",
    "RouterModel": "tinydancer.model.weights",
    "load_model": "tinydancer.model.weights",
    "save_model": "tinydancer.model.weights",
    "ConformalCalibration": "tinydancer.model.conformal",
    "EmbeddingSpec": "tinydancer.model.embedding",
    "aligned_empty": "tinydancer.model.embedding",
    "HistoryStore": "tinydancer.history.store",
    "HistoryConfig": "tinydancer.history.store",
    "HistoryReader": "tinydancer.history.analytics",
    "DecisionColumns": "tinydancer.history.records",
    "OutcomeColumns": "tinydancer.history.records",
    "from_agent_decisions": "tinydancer.history.records",
    "RoutingOutcomes": "tinydancer.datasets",
    "load_split": "tinydancer.datasets",
    "evaluate": "tinydancer.evaluation.offline",
    "replay": "tinydancer.evaluation.online",
    "pin_to_core": "tinydancer.runtime",
    "TextEncoder": "tinydancer.text.encoder",
    "TextEncoderConfig": "tinydancer.text.encoder",
}

__all__ = [
    "OBJECTIVES",
    "Agent",
    "AgentDecision",
    "AgentError",
    "AgentMetrics",
    "AgentRegistry",
    "AgentRequest",
    "AgentRouter",
    "AgentRouterConfig",
    "AgentType",
    "AgentsUnavailableError",
    "Alternative",
    "BanditConfig",
    "BatchScores",
    "BreakerConfig",
    "BreakerState",
    "Candidate",
    "CandidateBatch",
    "CircuitBreaker",
    "ColumnarDecisions",
    "ConfigError",
    "ConformalCalibration",
    "Constraints",
    "CostModel",
    "DecisionColumns",
    "DuplicateAgentError",
    "EmbeddingError",
    "EmbeddingSpec",
    "Endpoint",
    "FastGRNNConfig",
    "FeatureConfig",
    "FeedbackError",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "HistoryConfig",
    "HistoryError",
    "HistoryReader",
    "HistoryStore",
    "InvalidRequestError",
    "ModelFileError",
    "NoEligibleAgentError",
    "OutcomeColumns",
    "Router",
    "RouterConfig",
    "RouterModel",
    "RouterStats",
    "RoutingDecision",
    "RoutingOutcomes",
    "RoutingRequest",
    "RoutingResponse",
    "TextEncoder",
    "TextEncoderConfig",
    "TinyDancerError",
    "Transition",
    "UnknownAgentError",
    "aligned_empty",
    "evaluate",
    "from_agent_decisions",
    "load_model",
    "load_split",
    "pin_to_core",
    "replay",
    "save_model",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tinydancer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from tinydancer.agents.agent import (
        Agent,
        AgentType,
        CostModel,
    )
    from tinydancer.agents.bandit import (
        BanditConfig,
    )
    from tinydancer.agents.breaker import (
        BreakerConfig,
        BreakerState,
        CircuitBreaker,
        Transition,
    )
    from tinydancer.agents.config import AgentRouterConfig
    from tinydancer.agents.endpoint import Endpoint
    from tinydancer.agents.registry import (
        AgentMetrics,
        AgentRegistry,
    )
    from tinydancer.agents.router import AgentRouter, ColumnarDecisions
    from tinydancer.agents.types import (
        OBJECTIVES,
        AgentDecision,
        AgentRequest,
        Alternative,
        Constraints,
    )
    from tinydancer.candidates.config import (
        RouterConfig,
    )
    from tinydancer.candidates.features import (
        FeatureConfig,
    )
    from tinydancer.candidates.router import (
        Router,
        RouterStats,
    )
    from tinydancer.candidates.types import (
        BatchScores,
        Candidate,
        CandidateBatch,
        RoutingDecision,
        RoutingRequest,
        RoutingResponse,
    )
    from tinydancer.datasets import (
        RoutingOutcomes,
        load_split,
    )
    from tinydancer.evaluation.offline import (
        evaluate,
    )
    from tinydancer.evaluation.online import (
        replay,
    )
    from tinydancer.gateway.config import GatewayConfig
    from tinydancer.gateway.gateway import Gateway
    from tinydancer.history.analytics import (
        HistoryReader,
    )
    from tinydancer.history.store import (
        HistoryConfig,
        HistoryStore,
    )
    from tinydancer.model.conformal import (
        ConformalCalibration,
    )
    from tinydancer.model.embedding import (
        EmbeddingSpec,
        aligned_empty,
    )
    from tinydancer.model.fastgrnn import (
        FastGRNNConfig,
    )
    from tinydancer.model.weights import (
        RouterModel,
        load_model,
        save_model,
    )
    from tinydancer.runtime import (
        pin_to_core,
    )
    from tinydancer.text.encoder import TextEncoder, TextEncoderConfig
