"""Candidate-mode text: a `query_text` and candidates with `text` become embeddings
(one encoder call per request) before the request is staged."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tinydancer.candidates.types import Candidate, CandidateBatch, RoutingRequest
from tinydancer.errors import InvalidRequestError

__all__ = ["with_text_embeddings"]


class _Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _one_of(embedding: Any, text: Any, where: str, names: tuple[str, str]) -> bool:
    """True when `text` is the one given; raises unless exactly one of the two is."""
    if (embedding is None) == (text is None):
        raise InvalidRequestError(
            f"{where}{names[0]}",
            "both" if text is not None else "neither",
            f"exactly one of {names[0]} and {names[1]}",
        )
    if text is not None and not isinstance(text, str):
        raise InvalidRequestError(f"{where}{names[1]}", text, "a string")
    return text is not None


def with_text_embeddings(request: RoutingRequest, encoder: _Encoder) -> RoutingRequest:
    """`request` with its texts replaced by embeddings (itself when it has none)."""
    candidates = request.candidates
    listed: Sequence[Candidate] = () if isinstance(candidates, CandidateBatch) else candidates
    if request.query_text is None and not any(
        isinstance(c, Candidate) and c.text is not None for c in listed
    ):
        return request
    texts: list[str] = []
    if _one_of(request.query_embedding, request.query_text, "", ("query_embedding", "query_text")):
        texts.append(str(request.query_text))
    rows: list[int] = []
    for i, c in enumerate(listed):
        if isinstance(c, Candidate) and _one_of(
            c.embedding, c.text, f"candidates[{i}].", ("embedding", "text")
        ):
            rows.append(i)
            texts.append(str(c.text))
    vectors = encoder.encode(texts)
    query = request.query_embedding if request.query_text is None else vectors[0]
    if rows:
        listed_candidates = list(listed)
        for row, vector in zip(rows, vectors[len(texts) - len(rows) :], strict=True):
            listed_candidates[row] = dataclasses.replace(
                listed_candidates[row], embedding=vector, text=None
            )
        candidates = listed_candidates
    return dataclasses.replace(
        request, query_embedding=query, query_text=None, candidates=candidates
    )
