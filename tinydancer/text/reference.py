"""The same encoder in plain numpy: the parity oracle when the shared data (embedded by
sentence-transformers) is absent, and the baseline the benchmarks compare JAX with.

    vectors = reference_encode(params, ids, mask)   # the pytree of `bert.bert_params`

Written independently of `bert.py` (per-head loop, explicit softmax, erf by formula) so
that the two do not share a mistake. numpy has no erf: Abramowitz & Stegun 7.1.26
(absolute error < 1.5e-7) is far below float32 matmul noise at this size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinydancer.text.bert import HEAD_DIM, HEADS, HIDDEN, LAYER_NORM_EPS, NORMALIZE_EPS

__all__ = ["reference_encode"]


def _erf(x: np.ndarray) -> np.ndarray:
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _layer_norm(x: np.ndarray, gain: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * gain + bias


def _softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def reference_encode(
    params: dict[str, Any], ids: np.ndarray, mask: np.ndarray, dtype: Any = np.float32
) -> np.ndarray:
    """(B, T) ids and mask -> (B, 384) embeddings, computed in `dtype` (float64 for an
    oracle tighter than float32 rounding)."""
    p = {k: np.asarray(v, dtype) for k, v in params.items() if k != "layers"}
    t = ids.shape[1]
    m = np.asarray(mask, dtype)  # (B, T)
    x = p["word"][ids] + p["position"][:t][None] + p["token_type"]  # (B, T, D)
    x = _layer_norm(x, p["emb_ln_g"], p["emb_ln_b"])
    key_bias = np.where(m > 0, 0.0, -1e30).astype(dtype)[:, None, :]  # (B, 1, T)
    stacked = params["layers"]
    for i in range(len(stacked["qkv_w"])):
        la = {k: np.asarray(v[i], dtype) for k, v in stacked.items()}
        qkv = x @ la["qkv_w"] + la["qkv_b"]  # (B, T, 3D)
        q, k, v = qkv[..., :HIDDEN], qkv[..., HIDDEN : 2 * HIDDEN], qkv[..., 2 * HIDDEN :]
        context = np.empty_like(x)
        for h in range(HEADS):
            cols = slice(h * HEAD_DIM, (h + 1) * HEAD_DIM)
            scores = q[..., cols] @ k[..., cols].transpose(0, 2, 1) / np.sqrt(HEAD_DIM)
            context[..., cols] = _softmax(scores + key_bias) @ v[..., cols]  # (B, T, K)
        x = _layer_norm(x + context @ la["out_w"] + la["out_b"], la["ln1_g"], la["ln1_b"])
        hidden = _gelu(x @ la["ff1_w"] + la["ff1_b"])  # (B, T, F)
        x = _layer_norm(x + hidden @ la["ff2_w"] + la["ff2_b"], la["ln2_g"], la["ln2_b"])
    pooled = (x * m[..., None]).sum(1) / np.maximum(m.sum(1, keepdims=True), 1e-9)  # (B, D)
    norm = np.sqrt((pooled * pooled).sum(-1, keepdims=True))
    return (pooled / np.maximum(norm, NORMALIZE_EPS)).astype(np.float32)
