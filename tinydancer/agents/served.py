"""The agent model as `AgentRouter` serves it: read, checked and packed for the kernel.

A `ServedModel` is immutable: `reload` prepares a new one off the lock and swaps it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from tinydancer.model.conformal import uncertainty_table
from tinydancer.model.quantization import dequantized, pack
from tinydancer.model.weights import RouterModel

__all__ = ["ServedModel", "served_model"]


@dataclass(frozen=True, eq=False)
class ServedModel:
    model: RouterModel
    weights: tuple[Any, Any, Any]
    layout: tuple[Any, ...]
    table: Any
    heads: dict[str, int]
    dim: int  # the embedding dimension (read on every request)


def served_model(model: RouterModel) -> ServedModel:
    """An agent model (see `weights.serving_model`) packed for `agents.kernel.score_agents`."""
    qpack, spack, fpack, layout = pack(model.stored)
    return ServedModel(
        model,
        (jnp.asarray(dequantized(qpack, spack)), None, jnp.asarray(fpack)),
        layout,
        jnp.asarray(uncertainty_table(model.calibration)),
        {name: i for i, name in enumerate(model.feature_schema["agents"])},
        model.embedding.dim,
    )
