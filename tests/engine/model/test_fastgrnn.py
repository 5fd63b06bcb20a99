from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tinydancer import ConfigError
from tinydancer.model.fastgrnn import (
    UNROLL_MAX_TERMS,
    FastGRNNConfig,
    forward,
    forward_one_step,
    init_params,
    matrix_names,
    one_step_form,
)
from tinydancer.model.reference import fastgrnn_forward

CONFIGS = {
    "full": FastGRNNConfig(input_dim=6, hidden_dim=8, output_dim=3),
    "low-rank": FastGRNNConfig(input_dim=6, hidden_dim=8, output_dim=2, w_rank=3, u_rank=4),
}


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def config(request) -> FastGRNNConfig:
    return CONFIGS[request.param]


def _numpy(params):
    return {k: np.asarray(v) for k, v in params.items()}


def test_forward_matches_the_numpy_reference(config, key):
    params = init_params(config, key=key)
    xs = jax.random.normal(jax.random.PRNGKey(1), (5, 4, config.input_dim))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
    got = np.asarray(jax.jit(forward)(params, xs, jnp.asarray(mask)))
    want = fastgrnn_forward(_numpy(params), np.asarray(xs), mask)
    assert got.shape == (5, config.output_dim)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("wide", [False, True], ids=["unrolled", "wider-than-unrolled"])
def test_the_one_step_form_equals_forward(config, key, wide):
    # the candidate kernel's form: gates and the low-rank product computed once, small
    # contractions written out as sums (past UNROLL_MAX_TERMS terms, left as matmuls),
    # matrices as arrays or as lists of rows; same logits up to float32 rounding
    if wide:
        config = FastGRNNConfig(
            input_dim=UNROLL_MAX_TERMS + 3, hidden_dim=UNROLL_MAX_TERMS + 1, w_rank=config.w_rank
        )
    params = init_params(config, key=key)
    params["head.bias"] = params["head.bias"] + 0.3
    params["zeta"] = params["zeta"] - 1.7  # away from the initial gates
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(3), (37, config.input_dim))
    want = np.asarray(forward(params, x[:, None, :]))
    form = one_step_form(_numpy(params))
    assert "U" not in form and form["input_t"].shape == (config.input_dim, config.hidden_dim)
    as_rows = {k: list(v) if v.ndim == 2 else v for k, v in form.items()}
    for given in (form, as_rows):
        got = np.asarray(jax.jit(forward_one_step)(given, x))
        assert got.shape == (37, config.output_dim)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(want).max() > 0.1  # a real comparison, not of zeros


def test_padding_after_the_last_step_does_not_change_the_output(config, key):
    params = init_params(config, key=key)
    short = jax.random.normal(jax.random.PRNGKey(2), (3, 2, config.input_dim))
    padded = jnp.concatenate([short, 100.0 * jnp.ones((3, 5, config.input_dim))], axis=1)
    mask = jnp.concatenate([jnp.ones((3, 2), bool), jnp.zeros((3, 5), bool)], axis=1)
    np.testing.assert_allclose(
        forward(params, padded, mask), forward(params, short), rtol=1e-6, atol=1e-6
    )


def test_variable_lengths_in_one_batch_equal_separate_runs(config, key):
    params = init_params(config, key=key)
    seqs = [jax.random.normal(jax.random.PRNGKey(10 + n), (n, config.input_dim)) for n in (1, 3, 6)]
    batch = jnp.zeros((3, 6, config.input_dim))
    mask = np.zeros((3, 6), bool)
    for i, seq in enumerate(seqs):
        batch = batch.at[i, : seq.shape[0]].set(seq)
        mask[i, : seq.shape[0]] = True
    together = forward(params, batch, jnp.asarray(mask))
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(together[i], forward(params, seq[None])[0], rtol=1e-5, atol=1e-6)


def test_the_order_of_steps_matters(config, key):
    params = init_params(config, key=key)
    xs = jax.random.normal(jax.random.PRNGKey(3), (1, 4, config.input_dim))
    assert not np.allclose(forward(params, xs), forward(params, xs[:, ::-1]), atol=1e-4)


def test_single_step_shortcut_equals_the_general_cell(config, key):
    params = init_params(config, key=key)
    x = jax.random.normal(jax.random.PRNGKey(4), (7, 1, config.input_dim))
    # A 2-step sequence whose first step is masked out runs the general scan path.
    two = jnp.concatenate([x, x], axis=1)
    mask = jnp.asarray(np.tile([True, False], (7, 1)))
    np.testing.assert_allclose(forward(params, x), forward(params, two, mask), rtol=1e-5, atol=1e-6)


def test_tensor_shapes_and_matrix_names():
    config = CONFIGS["low-rank"]
    shapes = config.tensor_shapes()
    assert shapes["W1"] == (3, 6) and shapes["W2"] == (8, 3) and shapes["U1"] == (4, 8)
    assert set(matrix_names(config)) == {"W1", "W2", "U1", "U2", "head.weight"}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_dim": 0}, "input_dim"),
        ({"input_dim": 4, "w_rank": 5}, "w_rank"),
        ({"input_dim": 4, "hidden_dim": 2, "u_rank": 3}, "u_rank"),
    ],
    ids=["zero-input", "w-rank-too-big", "u-rank-too-big"],
)
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        FastGRNNConfig(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="unknown fields"):
        FastGRNNConfig.from_dict({"input_dim": 3, "hidden": 8})
