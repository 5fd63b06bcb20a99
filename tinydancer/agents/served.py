"""The agent model as `AgentRouter` serves it: read, checked and packed for the kernel.

A `ServedModel` is immutable: `reload` prepares a new one off the lock and swaps it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from tinydancer.errors import ModelFileError
from tinydancer.model.conformal import uncertainty_table
from tinydancer.model.quantization import dequantized, pack
from tinydancer.model.weights import RouterModel, load_model, shipped_model_path

__all__ = ["ServedModel", "read_agent_model", "served_model"]


@dataclass(frozen=True, eq=False)
class ServedModel:
    model: RouterModel
    weights: tuple[Any, Any, Any]
    layout: tuple[Any, ...]
    table: Any
    heads: dict[str, int]
    dim: int  # the embedding dimension (read on every request)


def read_agent_model(path: Path | None) -> RouterModel:
    """An agent model from `path`, or the shipped one."""
    return load_model(path or shipped_model_path("agent"), expect_mode="agent")


def served_model(model: RouterModel) -> ServedModel:
    """`model` packed for `agents.kernel.score_agents` (refused unless an agent model)."""
    if model.mode != "agent":
        raise ModelFileError(model.version, "wrong model mode", expected="agent", found=model.mode)
    qpack, spack, fpack, layout = pack(model.stored)
    return ServedModel(
        model,
        (jnp.asarray(dequantized(qpack, spack)), None, jnp.asarray(fpack)),
        layout,
        jnp.asarray(uncertainty_table(model.calibration)),
        {name: i for i, name in enumerate(model.feature_schema["agents"])},
        model.embedding.dim,
    )
