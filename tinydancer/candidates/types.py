"""Candidate-mode request and response types.

A request carries a query embedding and N candidates, either as a list of
`Candidate` objects (convenient) or as a `CandidateBatch` of numpy columns (the fast
path: no Python loop over candidates anywhere). The response is columnar either way;
per-candidate `RoutingDecision` objects are built only when `.decisions` is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from tinydancer.errors import InvalidRequestError

__all__ = [
    "BatchScores",
    "Candidate",
    "CandidateBatch",
    "RoutingDecision",
    "RoutingRequest",
    "RoutingResponse",
    "metadata_overlap",
]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One item that may serve the query (a memory, a document, a cached answer...).

    `created_at` is in Unix seconds; `success_rate` in [0, 1]; `metadata` string pairs
    compared with the request's metadata.
    """

    id: str
    embedding: Any
    created_at: float
    access_count: int = 0
    success_rate: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)
    text: str | None = None  # instead of `embedding` (None): encoded by the router


def metadata_overlap(candidate: Mapping[str, Any], request: Mapping[str, Any] | None) -> float:
    """Fraction of the request's metadata pairs that the candidate has with equal values."""
    if not request:
        return 0.0
    same = sum(1 for key, value in request.items() if key in candidate and candidate[key] == value)
    return same / len(request)


@dataclass(frozen=True, slots=True, eq=False)
class CandidateBatch:
    """Columnar candidates: N rows in numpy arrays.

    ids (N,) any dtype; embeddings (N, D) float32; created_at (N,) Unix seconds;
    access_count (N,); success_rate (N,). Metadata is either a precomputed
    `metadata_overlap` column in [0, 1] or a `tags` uint64 bitset per candidate that is
    compared with `RoutingRequest.tags` (overlap = |tags & request| / |request|).
    """

    ids: np.ndarray
    embeddings: np.ndarray
    created_at: np.ndarray
    access_count: np.ndarray
    success_rate: np.ndarray
    metadata_overlap: np.ndarray | None = None
    tags: np.ndarray | None = None

    def __len__(self) -> int:
        return (
            int(self.embeddings.shape[0])
            if hasattr(self.embeddings, "shape")
            else len(self.embeddings)
        )

    def check_lengths(self, rows: int) -> None:
        """Every column must have exactly `rows` entries: numpy would broadcast a length-1
        column to every row, silently."""
        for name in ("created_at", "access_count", "success_rate"):  # ids: Router._check_ids
            self._check_column(name, getattr(self, name), rows)
        for name in ("metadata_overlap", "tags"):
            if getattr(self, name) is not None:
                self._check_column(name, getattr(self, name), rows)

    @staticmethod
    def _check_column(name: str, values: Any, rows: int) -> None:
        shape = values.shape if isinstance(values, np.ndarray) else np.shape(values)
        if shape != (rows,):
            raise InvalidRequestError(
                f"candidates.{name}",
                f"{shape[0] if len(shape) == 1 else f'shape {shape}'} values",
                f"{rows} values, one per candidate embedding",
            )

    @classmethod
    def from_candidates(
        cls, candidates: Sequence[Candidate], request_metadata: Mapping[str, Any] | None = None
    ) -> CandidateBatch:
        """Columns from a list of `Candidate` (the convenience path; loops in Python)."""
        if len(candidates) == 0:
            raise InvalidRequestError("candidates", [], "at least one candidate")
        for index, candidate in enumerate(candidates):
            if not isinstance(candidate, Candidate):
                raise InvalidRequestError(f"candidates[{index}]", candidate, "a Candidate")
        try:
            embeddings = np.asarray([c.embedding for c in candidates], dtype=np.float32)
            created_at = np.asarray([c.created_at for c in candidates], dtype=np.float64)
            access_count = np.asarray([c.access_count for c in candidates], dtype=np.float64)
            success_rate = np.asarray([c.success_rate for c in candidates], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(
                "candidates",
                "ragged or non-numeric fields",
                "equal-length numeric embeddings and "
                "numeric created_at / access_count / success_rate",
                str(exc),
            ) from None
        overlap = np.asarray(
            [metadata_overlap(c.metadata, request_metadata) for c in candidates], dtype=np.float32
        )
        ids = np.empty(len(candidates), dtype=object)
        ids[:] = [c.id for c in candidates]
        return cls(
            ids, embeddings, created_at, access_count, success_rate, metadata_overlap=overlap
        )


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """A query embedding and its candidates (a list of `Candidate` or a `CandidateBatch`);
    or a `query_text` and candidates with `text`, which the router's text encoder embeds.

    `embedding_model`, when given, must name the model the router's weights were trained
    for (all-MiniLM-L6-v2 for the shipped ones); `tags` is the request's bitset for
    `CandidateBatch.tags`.
    """

    query_embedding: Any = None
    candidates: Sequence[Candidate] | CandidateBatch = ()
    metadata: Mapping[str, Any] | None = None
    tags: int | None = None
    request_id: str | None = None
    embedding_model: str | None = None
    query_text: str | None = None  # instead of `query_embedding`: encoded by the router


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    candidate_id: Any
    confidence: float
    use_lightweight: bool
    uncertainty: float


@dataclass(frozen=True, eq=False)
class RoutingResponse:
    """Decisions ranked by confidence, stored as columns (index 0 = most confident).

    Timings (µs): `feature_time_us` is the host-side preparation: validation, ages in
    float64, staging of the inputs (up to `router.HOST_REDUCE_ROWS` candidates, also the two
    embedding reductions). `inference_time_us` is the one jitted call, which computes the
    features (cosine, recency, frequency...), runs the FastGRNN and the conformal bound
    and brings the results back; the ranking follows on the host, in neither.
    """

    request_id: str
    candidate_ids: np.ndarray
    confidence: np.ndarray
    uncertainty: np.ndarray
    use_lightweight: np.ndarray
    inference_time_us: float
    feature_time_us: float
    candidates_processed: int
    model_version: str
    used_fallback: bool = False

    @cached_property
    def decisions(self) -> list[RoutingDecision]:
        """Per-candidate objects, ranked (built on first access)."""
        return [
            RoutingDecision(cid, float(c), bool(light), float(u))
            for cid, c, u, light in zip(
                self.candidate_ids.tolist(),
                self.confidence.tolist(),
                self.uncertainty.tolist(),
                self.use_lightweight.tolist(),
                strict=True,
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "decisions": [
                {
                    "candidate_id": d.candidate_id,
                    "confidence": d.confidence,
                    "use_lightweight": d.use_lightweight,
                    "uncertainty": d.uncertainty,
                }
                for d in self.decisions
            ],
            "inference_time_us": self.inference_time_us,
            "feature_time_us": self.feature_time_us,
            "candidates_processed": self.candidates_processed,
            "model_version": self.model_version,
            "used_fallback": self.used_fallback,
        }


@dataclass(frozen=True, slots=True, eq=False)
class BatchScores:
    """Scores of a large batch in input order (no ranking): `Router.score_batch`."""

    confidence: np.ndarray
    uncertainty: np.ndarray
    use_lightweight: np.ndarray
    model_version: str
    used_fallback: bool = False
