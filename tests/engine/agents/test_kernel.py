"""The agent kernel's Thompson draws against a numpy reference of the textbook formulas.

The kernel computes theta . phi as mu . phi + z . (L^T phi) and the winner of each draw
with plain reductions (over all agents at once for a few requests, one agent at a time
for many); the reference uses theta = mu + L z and argmax. Both read
the same pool rows, so choices and propensities must agree exactly and utilities to
float32 rounding, over many random registries, posteriors and requests.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer.agents.kernel import AGENT_ROWS, OUTPUT_ROWS, REQUEST_COLUMNS, score_agents
from tinydancer.model.conformal import uncertainty_table
from tinydancer.model.quantization import pack
from tinydancer.model.weights import load_model, shipped_model_path

MODEL = load_model(shipped_model_path("agent"))
OUT = {name: i for i, name in enumerate(OUTPUT_ROWS)}
REQ = {name: i for i, name in enumerate(REQUEST_COLUMNS)}
AG = {name: i for i, name in enumerate(AGENT_ROWS)}
DRAWS = 65


@pytest.fixture(scope="module")
def weights():
    import jax.numpy as jnp

    qpack, spack, fpack, layout = pack(MODEL.stored)
    table = jnp.asarray(uncertainty_table(MODEL.calibration))
    return (jnp.asarray(qpack), jnp.asarray(spack), jnp.asarray(fpack), table), layout


def reference_explore(out: np.ndarray, agents: np.ndarray, requests: np.ndarray, normals):
    """(utility of the deciding draw (B, A), propensity (B, A)) from the kernel's other rows."""
    p = out[:, OUT["model_quality"]]  # (B, A)
    ok = out[:, OUT["eligible"]] > 0
    mu = np.stack([agents[AG["mu0"]], agents[AG["mu1"]]], -1)  # (A, 2)
    zeros = np.zeros_like(agents[AG["l00"]])
    chol = np.stack(
        [
            np.stack([agents[AG["l00"]], zeros], -1),
            np.stack([agents[AG["l10"]], agents[AG["l11"]]], -1),
        ],
        axis=-2,
    )  # (A, 2, 2)
    phi = np.stack([np.ones_like(p), p], -1)  # (B, A, 2)
    col = {name: requests[:, i][:, None] for name, i in REQ.items()}
    latency = np.maximum(agents[AG["latency_ms"]], 0.0)[None]

    def utility(q):
        u = (
            col["w_quality"] * q
            - col["cost_scale"] * out[:, OUT["cost"]]
            - col["latency_scale"] * latency
            + col["w_similarity"] * out[:, OUT["similarity"]]
        )
        return np.where(ok, u, -np.inf)

    offsets = requests[:, REQ["offset"]].astype(int)
    theta_own = mu[None] + np.einsum("aij,baj->bai", chol, normals[offsets])
    chosen = utility(np.clip(np.einsum("bak,bak->ba", phi, theta_own), 0, 1))
    shared = normals[offsets[0] + 1 : offsets[0] + DRAWS]
    theta = mu[None] + np.einsum("aij,saj->sai", chol, shared)
    samples = utility(np.clip(np.einsum("bak,sak->sba", phi, theta), 0, 1))
    winners = np.concatenate([chosen[None], samples]).argmax(-1)  # (S, B)
    wins = (winners[..., None] == np.arange(p.shape[1])).mean(0)
    return chosen, np.where(ok, wins, 0.0)


@pytest.mark.parametrize("seed", range(16))
def test_thompson_draws_match_the_reference(weights, seed):
    (qpack, spack, fpack, table), layout = weights
    rng = np.random.default_rng(seed)
    # a few requests count the draws of all agents at once, 256 and more one agent at a
    # time (with at most 16 agents): both layouts, without ties (seeds 0-7) and with
    agents_count, batch = 16, (1, 4, 32, 300)[seed % 4]
    heads = len(MODEL.feature_schema["agents"])
    agents = np.zeros((len(AGENT_ROWS), agents_count), np.float32)
    agents[AG["eligible"]] = 1.0
    agents[AG["head"]] = rng.integers(-1, heads, agents_count)
    agents[AG["mu0"]] = rng.uniform(0, 0.5, agents_count)
    agents[AG["mu1"]] = rng.uniform(0, 1, agents_count)
    agents[AG["l00"]] = rng.uniform(0.01, 0.5, agents_count)
    agents[AG["l10"]] = rng.uniform(-0.3, 0.3, agents_count)
    agents[AG["l11"]] = rng.uniform(0.01, 0.5, agents_count)
    agents[AG["cost_estimate"]] = rng.uniform(0, 0.02, agents_count)
    agents[AG["latency_ms"]] = rng.choice([-1.0, 200.0, 900.0], agents_count)
    specialization = np.zeros((agents_count, 384), np.float32)
    messages = rng.normal(size=(batch, 1, 384)).astype(np.float32)
    requests = np.zeros((batch, len(REQUEST_COLUMNS)), np.float32)
    requests[:, REQ["w_quality"]] = 1.0
    requests[:, REQ["cost_scale"]] = rng.uniform(0, 20)
    requests[:, REQ["latency_scale"]] = rng.uniform(0, 1e-3)
    requests[:, REQ["tokens"]] = -1
    requests[:, REQ["max_cost"]] = np.inf
    requests[:, REQ["max_latency"]] = np.inf
    requests[:, REQ["min_quality"]] = -np.inf
    requests[:, REQ["length"]] = 1
    requests[:, REQ["offset"]] = rng.integers(0, 8192 - DRAWS, batch)
    if seed >= 8:  # ties: equal prices and latencies, qualities clipped at 1 in most draws
        agents[AG["mu0"]] = rng.uniform(0.9, 1.3, agents_count)
        agents[AG["cost_estimate"]] = rng.choice([0.001, 0.002], agents_count)
        agents[AG["latency_ms"]] = 200.0
    eligible = (rng.random((batch, agents_count)) < 0.8).astype(np.float32)
    normals = rng.standard_normal((8192, agents_count, 2)).astype(np.float32)
    out = np.asarray(
        score_agents(
            qpack,
            spack,
            fpack,
            table,
            agents,
            specialization,
            np.concatenate([messages.reshape(batch, -1), requests, eligible], axis=1),
            np.ascontiguousarray(normals.transpose(0, 2, 1)),  # the kernel's (P, 2, A) pool
            layout=layout,
            draws=DRAWS,
            explore=True,
        )
    )
    chosen, propensity = reference_explore(out, agents, requests, normals)
    utility = out[:, OUT["utility"]]
    assert (np.isinf(utility) == np.isinf(chosen)).all()
    finite = np.isfinite(chosen)
    np.testing.assert_allclose(utility[finite], chosen[finite], rtol=1e-5, atol=1e-6)
    # the choice (first argmax of the deciding draw) and its propensity are the same; the
    # kernel computes no other agent's
    best = chosen.argmax(-1)
    assert (utility.argmax(-1) == best).all()
    rows = np.arange(batch)
    np.testing.assert_allclose(
        out[rows, OUT["propensity"], best], propensity[rows, best], atol=1e-6
    )
    others = out[:, OUT["propensity"]].copy()
    others[rows, best] = 0.0
    assert (others == 0.0).all()
