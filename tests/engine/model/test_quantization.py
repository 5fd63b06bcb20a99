from __future__ import annotations

import jax
import numpy as np
import pytest

from tinydancer import ConfigError
from tinydancer.model.quantization import (
    dequantize,
    dequantize_numpy,
    pack,
    prune_by_magnitude,
    quantize,
    stored_size_bytes,
    unpack,
)


@pytest.fixture
def params():
    rng = np.random.default_rng(0)
    return {
        "W": rng.normal(size=(8, 5)).astype(np.float32),
        "U": rng.normal(size=(8, 8)).astype(np.float32),
        "zero": np.zeros((2, 3), np.float32),
        "b": rng.normal(size=(8,)).astype(np.float32),
    }


def test_int8_round_trip_error_is_at_most_half_a_step(params):
    stored = quantize(params, ["W", "U", "zero"])
    assert stored["W.q"].dtype == np.int8 and stored["W.scale"].shape == (8,)
    restored = dequantize_numpy(stored)
    for name in ("W", "U"):
        step = np.abs(params[name]).max(axis=1, keepdims=True) / 127
        assert np.all(np.abs(restored[name] - params[name]) <= step / 2 + 1e-7)
    np.testing.assert_array_equal(restored["zero"], 0.0)
    np.testing.assert_array_equal(restored["b"], params["b"])  # vectors stay float32


def test_each_row_uses_the_full_int8_range(params):
    q = quantize(params, ["W"])["W.q"]
    np.testing.assert_array_equal(np.abs(q).max(axis=1), 127)


def test_size_bytes_counts_what_is_stored(params):
    stored = quantize(params, ["W", "U", "zero"])
    expected = 8 * 5 + 8 * 4 + 8 * 8 + 8 * 4 + 2 * 3 + 2 * 4 + 8 * 4
    assert stored_size_bytes(stored) == expected


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_pruning_hits_the_target_and_keeps_the_largest(params, sparsity):
    pruned, masks = prune_by_magnitude(params, ["W", "U"], sparsity)
    for name in ("W", "U"):
        zeros = int((pruned[name] == 0).sum())
        assert zeros == int(np.floor(sparsity * params[name].size))
        kept = np.abs(params[name])[masks[name] == 1]
        dropped = np.abs(params[name])[masks[name] == 0]
        if dropped.size and kept.size:
            assert dropped.max() <= kept.min()
    np.testing.assert_array_equal(pruned["b"], params["b"])


def test_pruning_rejects_an_impossible_target(params):
    with pytest.raises(ConfigError, match="sparsity"):
        prune_by_magnitude(params, ["W"], 1.0)


def test_packed_layout_unpacks_to_the_same_tensors(params):
    stored = quantize(params, ["W", "U", "zero"])
    qpack, spack, fpack, layout = pack(stored)
    unpacked = jax.jit(unpack, static_argnames="layout")(qpack, spack, fpack, layout=layout)
    direct = dequantize({k: jax.numpy.asarray(v) for k, v in stored.items()})
    assert set(unpacked) == set(direct)
    for name in direct:
        np.testing.assert_array_equal(np.asarray(unpacked[name]), np.asarray(direct[name]))


def test_dequantizing_once_on_the_host_gives_exactly_the_per_call_matrices():
    import jax.numpy as jnp

    from tinydancer.model.quantization import dequantized, pack, unpack
    from tinydancer.model.weights import load_model, shipped_model_path

    stored = load_model(shipped_model_path("agent")).stored
    qpack, spack, fpack, layout = pack(stored)
    per_call = jax.jit(lambda q, s, f: unpack(q, s, f, layout))(
        jnp.asarray(qpack), jnp.asarray(spack), jnp.asarray(fpack)
    )
    once = jax.jit(lambda q, f: unpack(q, None, f, layout))(
        jnp.asarray(dequantized(qpack, spack)), jnp.asarray(fpack)
    )
    assert per_call.keys() == once.keys()
    for name in per_call:  # bit for bit: the same conversion and float32 product
        np.testing.assert_array_equal(np.asarray(per_call[name]), np.asarray(once[name]))
