"""Bulk decisions as columns: kernel output for N requests → `ColumnarDecisions`
and the `LedgerBlock` that lets their feedback be accepted, with no Python object per
request but the ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from tinydancer._ids import new_request_ids
from tinydancer.agents.ledger import LedgerBlock
from tinydancer.agents.requests import eligible_agents, request_row
from tinydancer.agents.snapshot import OUT, RoutingSnapshot
from tinydancer.agents.types import AgentRequest
from tinydancer.errors import InvalidRequestError
from tinydancer.model.embedding import USABLE_EMBEDDING, describe_unusable
from tinydancer.model.staging import bucket_for

__all__ = [
    "ColumnarDecisions",
    "checked_embeddings",
    "columnar_decisions",
    "decided_block",
    "score_in_chunks",
]


@dataclass(frozen=True, eq=False)
class ColumnarDecisions:
    """Decisions for N requests as columns; `agent_index` -1 = no eligible agent."""

    request_ids: list[str]
    agent_names: list[str]
    agent_index: np.ndarray
    confidence: np.ndarray
    uncertainty: np.ndarray
    expected_quality: np.ndarray
    estimated_cost_usd: np.ndarray
    model_quality: np.ndarray
    rankings: list[tuple[str, ...]]  # the distinct alternatives (ranked agents after the choice)
    ranking_index: np.ndarray  # (N,) each row's entry in `rankings`
    model_version: str

    def __len__(self) -> int:
        return len(self.request_ids)

    @cached_property
    def alternatives(self) -> list[tuple[str, ...]]:
        """Each row's alternatives (rows with the same ranking share one tuple)."""
        return [self.rankings[c] for c in self.ranking_index.tolist()]

    @property
    def agents(self) -> list[str | None]:
        return [self.agent_names[i] if i >= 0 else None for i in self.agent_index.tolist()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_ids,
            "agent": self.agents,
            "confidence": self.confidence.tolist(),
            "uncertainty": self.uncertainty.tolist(),
            "expected_quality": self.expected_quality.tolist(),
            "estimated_cost_usd": self.estimated_cost_usd.tolist(),
            "alternatives": self.alternatives,
            "model_version": self.model_version,
        }


def columnar_decisions(
    out: np.ndarray, snap: RoutingSnapshot, model_version: str, *, remember: bool
) -> tuple[ColumnarDecisions, LedgerBlock | None]:
    """out: (N, len(OUTPUT_ROWS), A) kernel output → the decisions and, with `remember`,
    their ledger block (ranked eligible agents and the model's qualities per row)."""
    count = out.shape[0]
    utility = out[:, OUT["utility"]]
    order = np.argsort(-utility, axis=1, kind="stable")[:, :4]
    best = order[:, 0]
    rows_index = np.arange(count)
    routable = np.isfinite(utility[rows_index, best])
    chosen = np.where(routable, best, -1)
    pick = np.maximum(chosen, 0)
    ids = new_request_ids(count)
    finite = np.isfinite(np.take_along_axis(utility, order, axis=1))  # (N, <=4), a prefix
    # Rows share few rankings: encode each row's ranked eligible agents as one integer,
    # build the names of each distinct ranking once, and index them per row.
    width = len(snap.base_eligible) + 1
    code = np.where(finite, order + 1, 0) @ (width ** np.arange(order.shape[1]))
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    ranked_by_code = [
        tuple(snap.names[k] for k in order[r][finite[r]].tolist()) for r in first.tolist()
    ]
    result = ColumnarDecisions(
        request_ids=ids,
        agent_names=list(snap.names),
        agent_index=chosen,
        confidence=np.where(routable, out[rows_index, OUT["propensity"], pick], 0.0),
        uncertainty=out[rows_index, OUT["uncertainty"], pick],
        expected_quality=out[rows_index, OUT["quality"], pick],
        estimated_cost_usd=out[rows_index, OUT["cost"], pick],
        model_quality=out[rows_index, OUT["model_quality"], pick],
        rankings=[ranked[1:] for ranked in ranked_by_code],
        ranking_index=inverse,
        model_version=model_version,
    )
    if not remember:
        return result, None
    return result, decided_block(ids, out, snap, order)


def decided_block(
    ids: list[str], out: np.ndarray, snap: RoutingSnapshot, order: np.ndarray | None = None
) -> LedgerBlock:
    """The ledger's record of N decisions from their kernel output (N, rows, A): each
    row's ranked eligible agents (at most four, the choice first; none for a row with no
    eligible agent) and the model's quality for each (NaN: no head). `order`: the rows'
    top-four ranking, when the caller has it."""
    utility = out[:, OUT["utility"]]
    if order is None:
        order = np.argsort(-utility, axis=1, kind="stable")[:, :4]
    finite = np.isfinite(np.take_along_axis(utility, order, axis=1))  # (N, <=4), a prefix
    known = np.take_along_axis(out[:, OUT["known"]], order, axis=1) > 0
    qualities = np.where(
        known, np.take_along_axis(out[:, OUT["model_quality"]], order, axis=1), np.nan
    ).astype(np.float32)  # NaN: the model has no head for that agent
    ranked = np.where(finite & finite[:, :1], order, -1).astype(np.int16)
    return LedgerBlock(ids, tuple(snap.names), ranked, qualities)


def checked_embeddings(embeddings: Any, dim: int) -> np.ndarray:
    """(N, dim) float32, every row finite and non-zero; else the error names the row."""
    block = np.asarray(embeddings, np.float32)
    if block.ndim != 2 or block.shape[1] != dim or block.shape[0] == 0:
        raise InvalidRequestError(
            "embeddings", f"array of shape {block.shape}", f"shape (N >= 1, {dim})"
        )
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # judged below
        norms = np.vecdot(block, block)
    bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
    if bad.size:
        raise InvalidRequestError(
            f"embeddings[{int(bad[0])}]", describe_unusable(block[bad[0]]), USABLE_EMBEDDING
        )
    return block


def score_in_chunks(
    block: np.ndarray,
    template: AgentRequest,
    snap: RoutingSnapshot,
    score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    chunk: int,
) -> np.ndarray:
    """Kernel output (N, rows, A) for N single-message requests sharing `template`'s
    objective and constraints, `chunk` rows per call (each padded to its compile bucket);
    `score(messages, rows, eligible)` is the router's jitted call."""
    row = request_row(template, snap, 1)
    eligible_row = eligible_agents(template, snap).astype(np.float32)
    eligible_row[list(snap.probes)] = 0.0  # bulk rows never probe a half-open circuit
    outputs = []
    for start in range(0, block.shape[0], chunk):
        part = block[start : start + chunk]
        size = part.shape[0]
        batch = bucket_for(size) if size > 1 else 1
        messages = np.zeros((batch, 1, block.shape[1]), np.float32)
        messages[:size, 0] = part
        rows = np.broadcast_to(row, (batch, row.shape[0])).copy()
        eligible = np.broadcast_to(eligible_row, (batch, eligible_row.shape[0]))
        outputs.append(score(messages, rows, np.ascontiguousarray(eligible))[:size])
    return np.concatenate(outputs)
