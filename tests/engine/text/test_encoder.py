"""The JAX encoder against its numpy reference, sentence-transformers' settings, the cache
and bad input. Parity with sentence-transformers itself is test_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

from tinydancer.errors import InvalidRequestError
from tinydancer.text import TextEncoder, TextEncoderConfig

TEXTS = [
    "What is the capital of France?",
    "Write a Python function that reverses a linked list in place, and explain its complexity.",
    "hi",
    "Ünïcödé, emoji 🎉 and CJK 漢字 all tokenise.",
]
LONG = " ".join(f"word{i} alpha beta" for i in range(300))  # well over 256 tokens


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_encode_returns_float32_unit_rows(encoder):
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cos(vectors[0], vectors[1]) < 0.9  # different texts, different vectors


def test_the_empty_string_is_a_valid_unit_vector(encoder):
    vector = encoder.encode([""])[0]
    assert np.isfinite(vector).all()
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert encoder.encode_counted([""])[1][0] == 2  # [CLS] [SEP]


def test_jax_matches_the_numpy_reference(encoder):
    texts = [*TEXTS, LONG]
    oracle = encoder.reference(texts, dtype=np.float64)
    assert _cos(encoder.encode(texts), oracle).min() >= 0.99999


def test_inputs_are_truncated_at_256_tokens_not_the_tokenizer_files_128(encoder):
    ids = encoder.tokenizer.ids([LONG])[0]
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    medium = " ".join(f"w{i}" for i in range(90))  # ~180 tokens: past 128, under 256
    vectors, counts = encoder.encode_counted([LONG, medium])
    assert counts[0] == 256 and 128 < counts[1] < 256
    truncated = encoder.reference([LONG], dtype=np.float64)[0]
    assert _cos(vectors[0], truncated) >= 0.99999
    # what was cut off does not matter: the same first 254 word pieces, another tail
    other_tail = LONG + " completely different ending " * 50
    assert _cos(encoder.encode([other_tail])[0], vectors[0]) >= 0.99999


def test_texts_are_stripped_like_sentence_transformers(encoder):
    a, b = encoder.encode(["  padded prompt \n", "padded prompt"])
    assert _cos(a, b) >= 0.99999


def test_a_text_gets_the_same_vector_whatever_its_batch(encoder):
    uncached = TextEncoder(TextEncoderConfig(cache_size=0, warm_shapes=()))
    alone = uncached.encode([TEXTS[1]])[0]
    crowd = uncached.encode([*TEXTS * 10, LONG])  # other buckets, other padding
    for row in np.flatnonzero(np.array([*TEXTS * 10, LONG]) == TEXTS[1]):
        assert _cos(alone, crowd[row]) >= 0.99999
    assert uncached.stats.cache_hits == 0 and uncached.stats.cache_misses == 42


def test_more_texts_than_the_largest_batch_are_chunked(encoder):
    texts = [f"prompt number {i} about topic {i % 7}" for i in range(75)]
    vectors = encoder.encode(texts)
    assert vectors.shape == (75, 384)
    np.testing.assert_allclose(vectors[40], encoder.encode([texts[40]])[0], atol=1e-5)


def test_the_cache_counts_hits_and_misses_and_evicts_the_oldest():
    small = TextEncoder(TextEncoderConfig(cache_size=2, warm_shapes=()))
    small.encode(["a", "b", "a"])  # the duplicate is encoded once, counted as a miss
    assert (small.stats.cache_hits, small.stats.cache_misses) == (0, 3)
    assert small.stats.batches == 1
    small.encode(["a", "c"])  # hit a; c evicts b (least recently used)
    assert (small.stats.cache_hits, small.stats.cache_misses) == (1, 4)
    small.encode(["b"])
    assert small.stats.cache_misses == 5
    assert small.cache_info() == {"size": 2, "max_size": 2, "hits": 1, "misses": 5}
    np.testing.assert_array_equal(small.encode(["c"]), small.encode(["c"]))


@pytest.mark.parametrize(
    ("texts", "field"),
    [
        ("a bare string", "texts"),
        (["ok", 3], "texts[1]"),
        (["ok", None], "texts[1]"),
        (["ok", "lone \ud800 surrogate"], "texts[1]"),
    ],
    ids=["bare-string", "number", "none", "surrogate"],
)
def test_bad_texts_name_the_field(encoder, texts, field):
    with pytest.raises(InvalidRequestError) as info:
        encoder.encode(texts)
    assert info.value.field == field


def test_an_empty_list_gives_no_rows(encoder):
    assert encoder.encode([]).shape == (0, 384)


@pytest.mark.parametrize(
    "changes",
    [{"seq_buckets": (16, 128)}, {"batch_buckets": (4, 2)}, {"seq_buckets": ()}],
    ids=["too-short", "unsorted", "empty"],
)
def test_bad_bucket_settings_are_refused(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):  # pydantic's ValidationError
        TextEncoderConfig(**changes)


def test_a_lazy_encoder_loads_once_and_preload_reports_missing_weights(monkeypatch):
    from tinydancer.text import weights
    from tinydancer.text.encoder import LazyEncoder

    lazy = LazyEncoder(TextEncoderConfig(warm_shapes=(), cache_size=0))
    assert lazy.state == "loading"
    monkeypatch.setenv(weights.ENV_VAR, "/nonexistent/encoder")
    assert lazy.preload() is False and lazy.loaded is None and lazy.state == "unavailable"
    with pytest.raises(weights.EncoderNotFoundError, match=weights.ENV_VAR):
        lazy.encode(["x"])
    monkeypatch.delenv(weights.ENV_VAR)
    try:
        weights.find_encoder_dir()
    except weights.EncoderNotFoundError:
        pytest.skip(f"text encoder weights not installed ({weights.INSTALL_LINE})")
    assert lazy.preload() is True and lazy.state == "ready"
    first = lazy.loaded
    assert lazy.encode(["x"]).shape == (1, 384) and lazy.loaded is first
