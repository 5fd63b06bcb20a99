"""Candidate mode with text: a query text and candidate texts score as their embeddings do."""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer import Candidate, InvalidRequestError, Router, RouterConfig, RoutingRequest

NOW = 1_700_000_000.0
DOCS = ["how to bake sourdough bread", "the history of the Roman empire", "a bread recipe"]


@pytest.fixture(scope="module")
def router(encoder) -> Router:
    return Router(RouterConfig(warm_up_to_candidates=16), clock=lambda: NOW, encoder=encoder)


def _candidates(**per_row) -> list[Candidate]:
    return [
        Candidate(
            f"d{i}",
            per_row.get("embeddings", [None] * 3)[i],
            NOW - 60 * i,
            3,
            0.5,
            text=per_row.get("texts", [None] * 3)[i],
        )
        for i in range(3)
    ]


def test_query_and_candidate_texts_score_as_their_embeddings(router, encoder):
    by_text = router.route(
        RoutingRequest(query_text="bread baking", candidates=_candidates(texts=DOCS))
    )
    vectors = encoder.encode(["bread baking", *DOCS])
    by_vector = router.route(RoutingRequest(vectors[0], _candidates(embeddings=list(vectors[1:]))))
    assert list(by_text.candidate_ids) == list(by_vector.candidate_ids)
    np.testing.assert_allclose(by_text.confidence, by_vector.confidence, rtol=1e-5)
    assert by_text.candidate_ids[-1] == "d1"  # the Roman empire is least like bread


def test_texts_and_embeddings_mix_within_one_request(router, encoder):
    mixed = _candidates(
        texts=[DOCS[0], None, DOCS[2]], embeddings=[None, encoder.encode([DOCS[1]])[0], None]
    )
    response = router.route(RoutingRequest(encoder.encode(["bread"])[0], mixed))
    assert response.candidates_processed == 3


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            RoutingRequest(np.ones(384, np.float32), _candidates(texts=DOCS), query_text="q"),
            "query_embedding",
        ),
        (
            RoutingRequest(query_text="q", candidates=_candidates(texts=[DOCS[0], None, DOCS[2]])),
            "candidates[1].embedding",
        ),
        (RoutingRequest(query_text=5, candidates=_candidates(texts=DOCS)), "query_text"),  # type: ignore[arg-type]
    ],
    ids=["both-query-fields", "candidate-with-neither", "query-text-not-a-string"],
)
def test_bad_text_requests_name_the_field(router, request_, field):
    with pytest.raises(InvalidRequestError) as info:
        router.route(request_)
    assert info.value.field == field
