"""The agent-mode kernel: one jitted call scores every agent for a batch of requests.

Per request b and agent a (vectorised; for a large batch the propensity's draws are
counted one agent at a time, unrolled at trace time):

    p_model[b, a]   offline FastGRNN over the request's message sequence (0 if no head)
    phi             [1, p_model]                       the bandit's context
    q_s[b, a]       clip(theta_s . phi, 0, 1), theta_s = mu_a + L_a z_s   (s = 0..S-1)
                    computed as mu_a . phi + z_s . (L_a^T phi), elementwise
    cost[b, a]      per-request + per-1k-tokens price (tokens given) or the observed mean
    utility_s       w_q q_s - cost_scale cost - latency_scale latency + w_sim similarity
    choice          argmax over eligible agents of utility_0 (draw 0 decides)
    propensity[a]   for the chosen agent a: the share of the S draws in which it wins
                    (the policy's probability of choosing it); 0 for the others

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


_WEIGHTS = ("w_quality", "cost_scale", "latency_scale", "w_similarity")


def _utility(
    q: jax.Array,
    weights: list[jax.Array],
    cost: jax.Array,
    latency: jax.Array,
    similarity: jax.Array,
    ok: jax.Array,
) -> jax.Array:
    """The objective's utility of qualities q, -inf where the agent is not eligible; every
    operand broadcast to q's layout (the same operations in the same order in each, so a
    draw's utility is the same float in every layout)."""
    w_quality, cost_scale, latency_scale, w_similarity = weights
    u = (
        w_quality * q
        - cost_scale * cost
        - latency_scale * jnp.maximum(latency, 0.0)
        + w_similarity * similarity
    )
    return jnp.where(ok, u, -jnp.inf)


def _first_max(values: jax.Array, index: jax.Array) -> jax.Array:
    """The index of the first maximum along the last axis, as two plain reductions, which
    XLA's CPU backend runs faster than its variadic argmax reduction."""
    top = values.max(axis=-1, keepdims=True)
    return jnp.min(jnp.where(values == top, index, index.shape[0]), axis=-1)


# Counting the choice's wins over the shared draws: for a large batch, one agent's
# (draw, request) slab at a time is faster (`route_embeddings` 17-29% faster at 512 to 10k
# requests and 10 agents, pinned to one core) but compiles one step per agent and is slower
# for a few requests; both count exactly the same wins (tests/engine/agents/test_kernel.py).
_BY_AGENT_MIN_BATCH = 256
_BY_AGENT_MAX_AGENTS = 16


def _draw_utilities(
    slabs: tuple[jax.Array, ...], z0: jax.Array, z1: jax.Array, weights: list[jax.Array]
) -> jax.Array:
    """The utilities of the shared draws z of the agents' slabs (mean, v0, v1, cost,
    latency, similarity, ok), all broadcast to one layout."""
    mean, v0, v1, cost, latency, similarity, ok = slabs
    q = jnp.clip(mean + z0 * v0 + z1 * v1, 0.0, 1.0)
    return _utility(q, weights, cost, latency, similarity, ok)


def _choice_wins(
    slabs: tuple[jax.Array, ...],
    z0: jax.Array,
    z1: jax.Array,
    weights: list[jax.Array],
    best: jax.Array,
) -> jax.Array:
    """(B,) the draws among z (A, S-1) in which `best` (B,) is the first maximum of the
    slabs (each (A, B)): it beats every earlier agent strictly and no later one does
    better. All draws of all agents at once, or for a large batch one agent's (S-1, B)
    slab at a time (the choice's own utility and the maxima before and after it)."""
    agents, batch = z0.shape[0], best.shape[0]
    if batch < _BY_AGENT_MIN_BATCH or agents > _BY_AGENT_MAX_AGENTS:
        samples = _draw_utilities(
            tuple(v[:, None] for v in slabs),
            z0[:, :, None],
            z1[:, :, None],
            [w[None, None, :] for w in weights],
        )  # (A, S-1, B)
        rank = jnp.arange(agents, dtype=jnp.int32)[:, None, None]
        first = best[None, None, :]
        # beating u strictly is reaching the next float above u: one reduction
        rivals = jnp.where(
            rank == first,
            -jnp.inf,
            jnp.where(rank < first, jnp.nextafter(samples, jnp.inf), samples),
        ).max(axis=0)  # (S-1, B)
        own = jnp.take_along_axis(samples, first, axis=0)[0]  # (S-1, B)
        return (own >= rivals).sum(axis=0)
    first = best[None, :]
    own = before = after = jnp.full((z0.shape[1], batch), -jnp.inf)  # (S-1, B)
    for a in range(agents):
        sample = _draw_utilities(
            tuple(v[a][None] for v in slabs),
            z0[a][:, None],
            z1[a][:, None],
            [w[None, :] for w in weights],
        )  # (S-1, B)
        own = jnp.where(first == a, sample, own)
        before = jnp.where(first > a, jnp.maximum(before, sample), before)
        after = jnp.where(first < a, jnp.maximum(after, sample), after)
    return ((own > before) & (own >= after)).sum(axis=0)


@partial(jax.jit, static_argnames=("layout", "draws", "explore"))
def score_agents(
    qpack: jax.Array,  # the dequantized matrices (float32) when spack is None
    spack: jax.Array | None,
    fpack: jax.Array,
    table: jax.Array,
    agents: jax.Array,  # (len(AGENT_ROWS), A)
    specialization: jax.Array,  # (A, D)
    inputs: jax.Array,  # (B, T D + len(REQUEST_COLUMNS) + A), see below
    normals: jax.Array,  # (P, 2, A) pool of standard normal draws, on the device
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
        weights = [col[name][:, None] for name in _WEIGHTS]
        return _utility(q, weights, cost, latency, similarity, ok)

    agents_count = ok.shape[-1]
    index = jnp.arange(agents_count, dtype=jnp.int32)
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
        z_own = jnp.take(normals, offsets, axis=0)  # (B, 2, A)
        chosen = utility(jnp.clip(mean + z_own[:, 0] * v0 + z_own[:, 1] * v1, 0.0, 1.0))
        best = _first_max(chosen, index)  # (B,) the choice
        # Only the choice's propensity is read: the share of the draws in which `best` is
        # the first maximum. The draws are laid out (agent, draw, request), so the
        # reductions over agents are elementwise maxima of contiguous (draw, request)
        # slabs (over the last axis of (draw, request, agent) they were 4x slower).
        z = jax.lax.dynamic_slice_in_dim(normals, offsets[0] + 1, draws - 1, axis=0)  # (S-1, 2, A)
        z0, z1 = z[:, 0].T, z[:, 1].T  # (A, S-1)
        mean_t, v0_t, v1_t, cost_t, similarity_t, ok_t = (
            v.T for v in (mean, v0, v1, cost, similarity, ok)
        )  # (A, B)
        latency_t = jnp.broadcast_to(latency, cost.shape).T
        slabs = (mean_t, v0_t, v1_t, cost_t, latency_t, similarity_t, ok_t)
        wins = _choice_wins(slabs, z0, z1, [col[name] for name in _WEIGHTS], best)
        share = (1.0 + wins.astype(jnp.float32)) / draws  # draw 0 is the choice's own win
        propensity = jnp.where(ok & (index[None, :] == best[:, None]), share[:, None], 0.0)
    else:
        chosen = utility(quality)
        propensity = jnp.where(ok, jax.nn.one_hot(jnp.argmax(chosen, axis=-1), agents_count), 0.0)
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
