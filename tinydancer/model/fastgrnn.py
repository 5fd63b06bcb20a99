"""FastGRNN (Kusupati et al., NeurIPS 2018) in JAX: the whole model in one file.

    z_t  = sigmoid(W x_t + U h_{t-1} + b_z)
    h~_t = tanh   (W x_t + U h_{t-1} + b_h)
    h_t  = z_t * h_{t-1} + (sigmoid(zeta) * (1 - z_t) + sigmoid(nu)) * h~_t
    y    = head.weight @ h_T + head.bias

W and U are shared by the gate and the update. Either may be low rank
(W = W2 @ W1, U = U2 @ U1) and sparse (magnitude-pruned, see `quantization`).
The time axis is real: `forward` scans over a (B, T, D) batch of left-aligned
sequences with a (B, T) validity mask, so padded steps leave the state unchanged and
h_T is the state after each sequence's last real step.

Parameters are a flat dict of named float32 arrays (the names are the safetensors
tensor names). The stored form is INT8 (see `quantization.dequantize`), turned back
into floats inside the caller's jitted function.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tinydancer.errors import ConfigError

__all__ = [
    "FastGRNNConfig",
    "Params",
    "forward",
    "forward_one_step",
    "init_params",
    "matrix_names",
    "one_step_form",
]

Params = Mapping[str, jax.Array]


@dataclass(frozen=True, slots=True)
class FastGRNNConfig:
    """Sizes of a FastGRNN. `w_rank` / `u_rank` = None means a full-rank matrix."""

    input_dim: int
    hidden_dim: int = 8
    output_dim: int = 1
    w_rank: int | None = None
    u_rank: int | None = None

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden_dim", "output_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"FastGRNNConfig.{name}: got {value!r}; expected an integer >= 1")
        for name, limit in (("w_rank", self.input_dim), ("u_rank", self.hidden_dim)):
            rank = getattr(self, name)
            if rank is not None and (not isinstance(rank, int) or not 1 <= rank <= limit):
                raise ConfigError(
                    f"FastGRNNConfig.{name}: got {rank!r}; expected None or an integer in 1..{limit}"
                )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FastGRNNConfig:
        known = {"input_dim", "hidden_dim", "output_dim", "w_rank", "u_rank"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(
                f"FastGRNNConfig: unknown fields {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**dict(data))

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every float parameter."""
        d, h, o = self.input_dim, self.hidden_dim, self.output_dim
        shapes: dict[str, tuple[int, ...]] = {}
        if self.w_rank is None:
            shapes["W"] = (h, d)
        else:
            shapes["W1"] = (self.w_rank, d)
            shapes["W2"] = (h, self.w_rank)
        if self.u_rank is None:
            shapes["U"] = (h, h)
        else:
            shapes["U1"] = (self.u_rank, h)
            shapes["U2"] = (h, self.u_rank)
        shapes |= {
            "b_z": (h,),
            "b_h": (h,),
            "zeta": (1,),  # (1,) not (): safetensors stores 0-d tensors as (1,)
            "nu": (1,),
            "head.weight": (o, h),
            "head.bias": (o,),
        }
        return shapes


def matrix_names(config: FastGRNNConfig) -> list[str]:
    """The 2-d parameters: the ones stored as INT8 and (except the head) prunable."""
    return [name for name, shape in config.tensor_shapes().items() if len(shape) == 2]


def init_params(config: FastGRNNConfig, *, key: jax.Array) -> dict[str, jax.Array]:
    """Glorot-normal matrices; zeta=1, nu=-4 as in the paper, gate bias 1 (remember)."""
    params: dict[str, jax.Array] = {}
    shapes = config.tensor_shapes()
    keys = jax.random.split(key, len(shapes))
    for k, (name, shape) in zip(keys, shapes.items(), strict=True):
        if len(shape) == 2:
            scale = np.sqrt(2.0 / (shape[0] + shape[1]))
            params[name] = scale * jax.random.normal(k, shape, jnp.float32)
        else:
            params[name] = jnp.zeros(shape, jnp.float32)
    params["b_z"] = jnp.ones((config.hidden_dim,), jnp.float32)
    params["zeta"] = jnp.full((1,), 1.0, jnp.float32)
    params["nu"] = jnp.full((1,), -4.0, jnp.float32)
    return params


def _input_projection(params: Params, x: jax.Array) -> jax.Array:
    # x: (..., D) -> (..., H)
    if "W" in params:
        return x @ params["W"].T
    return (x @ params["W1"].T) @ params["W2"].T


def _recurrent_projection(params: Params, h: jax.Array) -> jax.Array:
    # h: (B, H) -> (B, H)
    if "U" in params:
        return h @ params["U"].T
    return (h @ params["U1"].T) @ params["U2"].T


def _cell(params: Params, wx_t: jax.Array, h: jax.Array) -> jax.Array:
    pre = wx_t + _recurrent_projection(params, h)  # (B, H)
    z = jax.nn.sigmoid(pre + params["b_z"])
    h_tilde = jnp.tanh(pre + params["b_h"])
    update = jax.nn.sigmoid(params["zeta"]) * (1.0 - z) + jax.nn.sigmoid(params["nu"])
    return z * h + update * h_tilde


def _first_step(
    pre: jax.Array, b_z: jax.Array, b_h: jax.Array, zeta_gate: jax.Array, nu_gate: jax.Array
) -> jax.Array:
    """The cell's state after one step from h0 = 0, given W x (B, H) and the gates
    sigmoid(zeta), sigmoid(nu)."""
    z = jax.nn.sigmoid(pre + b_z)
    return (zeta_gate * (1.0 - z) + nu_gate) * jnp.tanh(pre + b_h)


# Contractions up to this many terms are written out by `_small_matmul`.
UNROLL_MAX_TERMS = 16


def _small_matmul(x: jax.Array, w_t: Any) -> jax.Array:
    """x @ w_t (x: (B, K), w_t: (K, M), or its K rows) as K products summed in order,
    when K is small.

    XLA on CPU runs every dot as a thunk of its own; written out, a contraction of a
    few terms fuses into the elementwise loop around it, and a whole small model
    becomes a couple of fused loops (rows sliced one by one from a flat parameter array
    fuse too, where a reshaped matrix is copied first)."""
    if len(w_t) > UNROLL_MAX_TERMS:
        return x @ jnp.asarray(w_t)
    out = x[:, 0:1] * w_t[0]
    for k in range(1, len(w_t)):
        out = out + x[:, k : k + 1] * w_t[k]
    return out


def one_step_form(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What `forward_one_step` reads, computed once on the host from float parameters:
    the input weights as one (D, H) matrix (W2 W1 multiplied out when low rank), the
    gates sigmoid(zeta) and sigmoid(nu), the head transposed (H, O) and the biases.
    U is left out: one step from h0 = 0 never reads it."""
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    w = p["W"] if "W" in p else p["W2"] @ p["W1"]
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x: sigmoid 0
        gates = {k + "_gate": 1.0 / (1.0 + np.exp(-p[k])) for k in ("zeta", "nu")}
    return {
        "input_t": np.ascontiguousarray(w.T),
        "b_z": p["b_z"],
        "b_h": p["b_h"],
        **{k: v.astype(np.float32) for k, v in gates.items()},
        "head_t": np.ascontiguousarray(p["head.weight"].T),
        "head.bias": p["head.bias"],
    }


def forward_one_step(form: Mapping[str, Any], x: jax.Array) -> jax.Array:
    """`forward(params, x[:, None, :])` for one-step inputs x (B, D), logits (B, O), from
    `one_step_form(params)`, with contractions of up to `UNROLL_MAX_TERMS` terms written
    out (`_small_matmul`): the candidate kernel's form. Equal to `forward` up to float32
    rounding of the sums. A matrix may also be given as the list of its rows."""
    pre = _small_matmul(x, form["input_t"])
    h = _first_step(pre, form["b_z"], form["b_h"], form["zeta_gate"], form["nu_gate"])
    return _small_matmul(h, form["head_t"]) + form["head.bias"]


def forward(params: Params, xs: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Run the cell over a batch of sequences and apply the head.

    xs: (B, T, D) left-aligned sequences; mask: (B, T) bool, True on real steps
    (None = all real). Returns logits (B, O).
    """
    batch, steps, _ = xs.shape
    hidden = params["b_z"].shape[0]
    h0 = jnp.zeros((batch, hidden), xs.dtype)  # (B, H)
    wx = _input_projection(params, xs)  # (B, T, H): one matmul for every step
    if steps == 1:
        # One step from h0 = 0: U h0 = 0 and z * h0 = 0, so only the input path remains.
        # (Same cell; this spares the hot path a matmul by zero and the scan bookkeeping.)
        gates = jax.nn.sigmoid(params["zeta"]), jax.nn.sigmoid(params["nu"])
        h = _first_step(wx[:, 0], params["b_z"], params["b_h"], *gates)
        if mask is not None:
            h = jnp.where(mask[:, 0, None], h, h0)
    else:
        step_mask = jnp.ones((batch, steps), bool) if mask is None else mask

        def step(h: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            wx_t, m_t = inputs  # (B, H), (B,)
            return jnp.where(m_t[:, None], _cell(params, wx_t, h), h), None

        h, _ = jax.lax.scan(step, h0, (jnp.swapaxes(wx, 0, 1), step_mask.T))
    return h @ params["head.weight"].T + params["head.bias"]  # (B, O)
