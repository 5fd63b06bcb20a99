"""Tiny Dancer: decide in microseconds who should serve each AI request.

    import tinydancer as td
    router = td.Router()                                   # shipped candidate model
    response = router.route(td.RoutingRequest(query_embedding=q, candidates=batch))

Importing the package is cheap and has no side effects: JAX, pydantic and the model
code load on first use of a name below (PEP 562 lazy attributes), and nothing is
pinned, configured or read from the environment.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tinydancer._errors import (
    AgentError,
    AgentsUnavailableError,
    ConfigError,
    DuplicateAgentError,
    EmbeddingError,
    FeedbackError,
    HistoryError,
    InvalidRequestError,
    ModelFileError,
    NoEligibleAgentError,
    TinyDancerError,
    UnknownAgentError,
)

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "BatchScores": "tinydancer.candidates",
    "Candidate": "tinydancer.candidates",
    "CandidateBatch": "tinydancer.candidates",
    "RoutingDecision": "tinydancer.candidates",
    "RoutingRequest": "tinydancer.candidates",
    "RoutingResponse": "tinydancer.candidates",
    "ConformalCalibration": "tinydancer.conformal",
    "EmbeddingSpec": "tinydancer.embedding",
    "aligned_empty": "tinydancer.embedding",
    "FastGRNNConfig": "tinydancer.fastgrnn",
    "FeatureConfig": "tinydancer.features",
    "Router": "tinydancer.router",
    "RouterConfig": "tinydancer.config",
    "RouterModel": "tinydancer.weights",
    "load_model": "tinydancer.weights",
    "save_model": "tinydancer.weights",
    "pin_to_core": "tinydancer.runtime",
}

__all__ = [
    "AgentError",
    "AgentsUnavailableError",
    "BatchScores",
    "Candidate",
    "CandidateBatch",
    "ConfigError",
    "ConformalCalibration",
    "DuplicateAgentError",
    "EmbeddingError",
    "EmbeddingSpec",
    "FastGRNNConfig",
    "FeatureConfig",
    "FeedbackError",
    "HistoryError",
    "InvalidRequestError",
    "ModelFileError",
    "NoEligibleAgentError",
    "Router",
    "RouterConfig",
    "RouterModel",
    "RoutingDecision",
    "RoutingRequest",
    "RoutingResponse",
    "TinyDancerError",
    "UnknownAgentError",
    "aligned_empty",
    "load_model",
    "pin_to_core",
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
    from tinydancer.candidates import (
        BatchScores,
        Candidate,
        CandidateBatch,
        RoutingDecision,
        RoutingRequest,
        RoutingResponse,
    )
    from tinydancer.config import RouterConfig
    from tinydancer.conformal import ConformalCalibration
    from tinydancer.embedding import EmbeddingSpec, aligned_empty
    from tinydancer.fastgrnn import FastGRNNConfig
    from tinydancer.features import FeatureConfig
    from tinydancer.router import Router
    from tinydancer.runtime import pin_to_core
    from tinydancer.weights import RouterModel, load_model, save_model
