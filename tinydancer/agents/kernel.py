"""The agent-mode kernel: one jitted call scores every agent for a batch of requests.

Per request b and agent a (all vectorised, no loop over agents or requests):

    p_model[b, a]   offline FastGRNN over the request's message sequence (0 if no head)
    phi             [1, p_model]                       the bandit's context
    q_s[b, a]       clip(theta_s . phi, 0, 1), theta_s = mu_a + L_a z_s   (s = 0..S-1)
                    computed as mu_a . phi + z_s . (L_a^T phi), elementwise
    cost[b, a]      per-request + per-1k-tokens price (tokens given) or the observed mean
    utility_s       w_q q_s - cost_scale cost - latency_scale latency + w_sim similarity
    choice          argmax over eligible agents of utility_0 (draw 0 decides)
    propensity[a]   share of the S draws in which a wins (the policy's probability)

Agent columns (`AGENT_ROWS`) and request parameters (`REQUEST_COLUMNS`) travel as one
float32 array each, so a call passes few host arrays.

Thompson draws come from a pool of standard normals kept on the device: the host picks
a random offset per request (seeded, so routing is reproducible). Generating thousands
of normals per call with threefry cost more than the rest of the kernel on a small CPU;
a pool lookup is one gather. The deciding draw is each request's own; the S - 1 draws
that estimate the propensity are shared by the requests of one call.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from tinydancer.model.conformal import uncertainty_jnp
from tinydancer.model.fastgrnn import forward
from tinydancer.model.quantization import unpack

__all__ = ["AGENT_ROWS", "OUTPUT_ROWS", "REQUEST_COLUMNS", "score_agents"]

AGENT_ROWS = (
    "eligible",
    "head",
    "mu0",
    "mu1",
    "l00",
    "l10",
    "l11",
    "cost_fixed",
    "cost_per_1k",
    "cost_estimate",
    "latency_ms",
    "has_specialization",
)
REQUEST_COLUMNS = (
    "w_quality",
    "cost_scale",
    "latency_scale",
    "w_similarity",
    "tokens",
    "max_cost",
    "max_latency",
    "min_quality",
    "length",
    "offset",
)
OUTPUT_ROWS = (
    "utility",
    "quality",
    "cost",
    "similarity",
    "eligible",
    "propensity",
    "uncertainty",
    "model_quality",
    "known",
)


@partial(jax.jit, static_argnames=("layout", "draws", "explore"))
def score_agents(
    qpack: jax.Array,  # the dequantized matrices (float32) when spack is None
    spack: jax.Array | None,
    fpack: jax.Array,
    table: jax.Array,
    agents: jax.Array,  # (len(AGENT_ROWS), A)
    specialization: jax.Array,  # (A, D)
    inputs: jax.Array,  # (B, T D + len(REQUEST_COLUMNS) + A), see below
    normals: jax.Array,  # (P, A, 2) pool of standard normal draws, on the device
    *,
    layout: tuple[Any, ...],
    draws: int,
    explore: bool,
) -> jax.Array:
    """(B, len(OUTPUT_ROWS), A) float32.

    Each row of `inputs` holds a request's messages (T, D) left-aligned, its
    `REQUEST_COLUMNS` and its host-side eligibility per agent (active, breaker,
    capabilities, exclusions): one host array per call instead of three (each host
    array passed to a jitted call costs a few µs).
    """
    width, dim, count = inputs.shape[1], specialization.shape[1], agents.shape[1]
    steps = (width - len(REQUEST_COLUMNS) - count) // dim
    messages = inputs[:, : steps * dim].reshape(inputs.shape[0], steps, dim)  # (B, T, D)
    requests = inputs[:, steps * dim : width - count]  # (B, len(REQUEST_COLUMNS))
    eligible = inputs[:, width - count :]  # (B, A)
    col = {name: requests[:, i] for i, name in enumerate(REQUEST_COLUMNS)}  # each (B,)
    row = {name: agents[i] for i, name in enumerate(AGENT_ROWS)}  # each (A,)
    mask = jnp.arange(steps, dtype=jnp.float32)[None, :] < col["length"][:, None]  # (B, T)
    logits = forward(unpack(qpack, spack, fpack, layout), messages, mask)  # (B, heads)
    head = row["head"].astype(jnp.int32)
    known = head >= 0  # (A,)
    p_model = jnp.where(
        known, jax.nn.sigmoid(jnp.take(logits, jnp.maximum(head, 0), axis=1)), 0.0
    )  # (B, A)

    mu = jnp.stack([row["mu0"], row["mu1"]], axis=-1)  # (A, 2)
    phi = jnp.stack([jnp.ones_like(p_model), p_model], axis=-1)  # (B, A, 2)
    quality = jnp.clip(jnp.einsum("bak,ak->ba", phi, mu), 0.0, 1.0)  # posterior mean (B, A)

    tokens = col["tokens"][:, None]
    per_token = row["cost_per_1k"][None, :] > 0
    cost = jnp.where(
        (tokens >= 0) & per_token,
        row["cost_fixed"] + row["cost_per_1k"] * tokens / 1000.0,
        row["cost_estimate"][None, :],
    )  # (B, A)
    latency = row["latency_ms"][None, :]  # (1, A); < 0 means unknown
    last = jnp.take_along_axis(
        messages, jnp.maximum(col["length"].astype(jnp.int32) - 1, 0)[:, None, None], axis=1
    )[:, 0]  # (B, D) the latest message
    last_norm = jnp.sqrt(jnp.einsum("bd,bd->b", last, last))
    similarity = jnp.where(
        row["has_specialization"] > 0,
        (last @ specialization.T) / jnp.maximum(last_norm, 1e-12)[:, None],
        0.0,
    )  # (B, A)
    ok = (
        (eligible > 0)
        & (cost <= col["max_cost"][:, None])
        & ((latency < 0) | (latency <= col["max_latency"][:, None]))
        & (quality >= col["min_quality"][:, None])
    )

    def utility(q: jax.Array) -> jax.Array:
        u = (
            col["w_quality"][:, None] * q
            - col["cost_scale"][:, None] * cost
            - col["latency_scale"][:, None] * jnp.maximum(latency, 0.0)
            + col["w_similarity"][:, None] * similarity
        )
        return jnp.where(ok, u, -jnp.inf)

    if explore:
        # The deciding draw is the request's own (pool row offset_b); the draws that
        # estimate its propensity are shared by the batch (rows offset_0 + 1 .. S - 1):
        # common random numbers keep each request's estimate unbiased at a fraction of
        # the cost of S draws per request. With theta = mu + L z (L lower triangular),
        # theta . phi = mu . phi + z . (L^T phi), all elementwise over (draw, request, agent).
        offsets = col["offset"].astype(jnp.int32)  # (B,)
        mean = jnp.einsum("bak,ak->ba", phi, mu)  # (B, A) before clipping
        v0 = row["l00"][None, :] + row["l10"][None, :] * p_model  # (B, A) = (L^T phi)_0
        v1 = row["l11"][None, :] * p_model  # (B, A) = (L^T phi)_1
        z_own = jnp.take(normals, offsets, axis=0)  # (B, A, 2)
        chosen = utility(jnp.clip(mean + z_own[..., 0] * v0 + z_own[..., 1] * v1, 0.0, 1.0))
        z_shared = jax.lax.dynamic_slice_in_dim(
            normals, offsets[0] + 1, draws - 1, axis=0
        )  # (S-1, A, 2)
        samples = jnp.clip(
            mean[None] + z_shared[:, None, :, 0] * v0[None] + z_shared[:, None, :, 1] * v1[None],
            0.0,
            1.0,
        )  # (S-1, B, A)
        utilities = jnp.concatenate([chosen[None], utility(samples)], axis=0)  # (S, B, A)
        agents_count = ok.shape[-1]
        index = jnp.arange(agents_count, dtype=jnp.int32)
        top = utilities.max(axis=-1, keepdims=True)
        # argmax (first maximum) as two plain reductions, which XLA's CPU backend runs
        # faster than its variadic argmax reduction
        first = jnp.min(jnp.where(utilities == top, index, agents_count), axis=-1)  # (S, B)
        wins = (first[..., None] == index).astype(jnp.float32)  # (S, B, A)
        propensity = jnp.where(ok, wins.mean(axis=0), 0.0)
    else:
        chosen = utility(quality)
        propensity = jnp.where(ok, jax.nn.one_hot(jnp.argmax(chosen, axis=-1), ok.shape[-1]), 0.0)
    uncertainty = jnp.where(known, uncertainty_jnp(table, p_model), 1.0)
    rows = [
        chosen,
        quality,
        cost,
        similarity,
        ok,
        propensity,
        uncertainty,
        p_model,
        jnp.broadcast_to(known, ok.shape),
    ]
    return jnp.stack([r.astype(jnp.float32) for r in rows], axis=1)
