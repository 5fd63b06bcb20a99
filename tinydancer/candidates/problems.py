"""Turning the candidate kernel's per-row problem bits into errors that name the field."""

from __future__ import annotations

import numpy as np

from tinydancer.candidates import features as feats
from tinydancer.candidates.types import CandidateBatch
from tinydancer.errors import EmbeddingError, InvalidRequestError
from tinydancer.model.embedding import USABLE_EMBEDDING, describe_unusable

__all__ = ["raise_problem"]

_MILLISECONDS_THRESHOLD = 1e11  # Unix seconds reach 1e11 in the year 5138; ms did in 1973.
_PROBLEM_TEXT = {
    feats.PROBLEM_NON_FINITE_EMBEDDING: (
        "embedding",
        "a vector containing NaN or inf",
        "finite numbers",
    ),
    feats.PROBLEM_ZERO_EMBEDDING: ("embedding", "the zero vector", "a non-zero embedding"),
    feats.PROBLEM_SUCCESS_RATE: ("success_rate", "a value outside [0, 1]", "a number in [0, 1]"),
    feats.PROBLEM_ACCESS_COUNT: ("access_count", "a negative or NaN count", "a count >= 0"),
    feats.PROBLEM_OVERLAP: ("metadata_overlap", "a value outside [0, 1]", "a number in [0, 1]"),
}


def raise_problem(
    problems: np.ndarray, batch: CandidateBatch, query: np.ndarray, max_future_skew_s: float
) -> None:
    """Raise the error that names the first bad row's field (`problems`: per-row bits)."""
    index = int(np.flatnonzero(problems)[0])
    code = int(problems[index])
    if code & feats.PROBLEM_QUERY:
        raise EmbeddingError("query_embedding", describe_unusable(query), USABLE_EMBEDDING)
    where = f"candidates[{index}]"
    if code & feats.PROBLEM_CREATED_AT:
        value = float(np.asarray(batch.created_at)[index])
        if value >= _MILLISECONDS_THRESHOLD:
            raise InvalidRequestError(
                f"{where}.created_at", value, "Unix time in seconds", "looks like milliseconds"
            )
        raise InvalidRequestError(
            f"{where}.created_at",
            value,
            "a finite Unix time in seconds, not in the future",
            f"allowed clock skew {max_future_skew_s} s",
        )
    bit = code & -code
    name, value_text, expected = _PROBLEM_TEXT[bit]
    if name == "embedding":
        value_text = describe_unusable(np.asarray(batch.embeddings)[index])
        expected = USABLE_EMBEDDING
    error = EmbeddingError if name == "embedding" else InvalidRequestError
    raise error(
        f"{where}.{name}",
        value_text,
        expected,
        f"candidate id {np.asarray(batch.ids)[index]!r}",
    )
