"""A documented synthetic generator of candidate-relevance data.

No public data labels whether a retrieved candidate (a memory, a document, a cached
answer) was useful for a query, so the shipped candidate model is trained on this
generator and says so in its model card. The story:

* 48 topics, each a random unit direction in the 384-d embedding space. A query is its
  topic's direction plus noise (cosine ~0.7 to it), renormalised.
* Each candidate is on the query's topic with probability 0.35, else on another
  topic; its embedding is the topic direction plus noise of a random strength, so
  cosine similarity to the query spans roughly -0.1..0.9.
* Age is log-uniform from 10 s to 30 days; access count is log-normal; success rate is
  Beta distributed (higher for on-topic candidates); metadata overlap is one of
  0, 1/4, ..., 1.
* A candidate is useful with probability
  sigmoid(-5.5 + 9 sim + 2.2 success * [sim > 0.45] + 1.2 recency + 1.0 frequency
  + 1.0 overlap - 1.5 [success < 0.2]): relevance dominates, track record matters only
  for relevant candidates (an interaction a weighted sum cannot express).

`generate` returns raw columns; `tinydancer.candidates.reference.candidate_features` turns them
into the model's inputs. Any seed gives fresh exchangeable data (used to test
conformal coverage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CandidateData", "generate"]

_TOPICS = 48


@dataclass(frozen=True, eq=False)
class CandidateData:
    queries: np.ndarray  # (Q, D) float32
    query_index: np.ndarray  # (N,) int: which query each candidate belongs to
    embeddings: np.ndarray  # (N, D) float32
    age_s: np.ndarray  # (N,) float64
    access_count: np.ndarray  # (N,) float64
    success_rate: np.ndarray  # (N,) float32
    overlap: np.ndarray  # (N,) float32
    useful: np.ndarray  # (N,) float32 0/1
    useful_probability: np.ndarray  # (N,) the generator's true probability

    def columns(self) -> np.ndarray:
        """(5, N) float32 in the router's column layout (age, count, success, overlap, valid)."""
        return np.stack(
            [
                self.age_s,
                self.access_count,
                self.success_rate,
                self.overlap,
                np.ones_like(self.overlap),
            ]
        ).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def generate(
    n_queries: int, candidates_per_query: int, *, seed: int, dim: int = 384
) -> CandidateData:
    rng = np.random.default_rng(seed)
    # Topic directions are fixed across seeds: the "world" stays the same, samples change.
    topics = _unit(np.random.default_rng(12345).normal(size=(_TOPICS, dim)))
    query_topic = rng.integers(0, _TOPICS, n_queries)
    queries = _unit(
        topics[query_topic] + rng.normal(scale=1.0 / np.sqrt(dim), size=(n_queries, dim))
    )
    n = n_queries * candidates_per_query
    query_index = np.repeat(np.arange(n_queries), candidates_per_query)
    on_topic = rng.random(n) < 0.35
    topic = np.where(on_topic, query_topic[query_index], rng.integers(0, _TOPICS, n))
    noise_scale = rng.uniform(0.3, 2.5, n)[:, None] / np.sqrt(dim)
    blend = rng.uniform(0.0, 0.6, n)[:, None]  # some candidates sit near the query itself
    base = (1 - blend) * topics[topic] + blend * queries[query_index]
    embeddings = _unit(base + noise_scale * rng.normal(size=(n, dim)))
    similarity = np.einsum("ij,ij->i", embeddings, queries[query_index])
    age_s = np.exp(rng.uniform(np.log(10.0), np.log(30 * 86_400.0), n))
    access_count = np.floor(np.exp(rng.normal(2.0, 1.8, n)))
    success_rate = np.where(on_topic, rng.beta(5, 2, n), rng.beta(2, 3, n)).astype(np.float32)
    overlap = (rng.integers(0, 5, n) / 4.0).astype(np.float32)
    recency = np.exp(-1e-3 * age_s)
    frequency = np.minimum(1.0, np.log1p(access_count) / np.log(10_001.0))
    logit = (
        -5.5
        + 9.0 * similarity
        + 2.2 * success_rate * (similarity > 0.45)
        + 1.2 * recency
        + 1.0 * frequency
        + 1.0 * overlap
        - 1.5 * (success_rate < 0.2)
    )
    probability = 1.0 / (1.0 + np.exp(-logit))
    useful = (rng.random(n) < probability).astype(np.float32)
    return CandidateData(
        queries,
        query_index,
        embeddings,
        age_s,
        access_count,
        success_rate,
        overlap,
        useful,
        probability.astype(np.float32),
    )
