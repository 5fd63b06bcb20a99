"""all-MiniLM-L6-v2 as sentence-transformers runs it, in one file: BERT (6 layers, hidden
384, 12 heads of 32, GELU, post-LayerNorm) -> attention-masked mean pooling -> L2 norm.

Shapes: B = batch bucket, T = sequence bucket (padded; `mask` marks real tokens),
D = 384 hidden, H = 12 heads, K = 32 per head, F = 1536 feed-forward.

    params = bert_params(tensors)                     # safetensors names -> this pytree
    vectors = encode_tokens(params, ids, mask)        # (B, T) int32 x2 -> (B, D) float32

`encode_tokens` is what `TextEncoder` jit-compiles once per (B, T) bucket. The six layers
run as one `lax.scan` over stacked weights (compiles once per shape, not six times);
the weights are arguments, not constants, so XLA does not fold 90 MB into every compiled shape.
The pure-numpy twin, the parity oracle, is `reference.py`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["HIDDEN", "LAYERS", "bert_params", "encode_tokens", "layer_flops"]

LAYERS = 6
HIDDEN = 384  # D
HEADS = 12  # H
HEAD_DIM = HIDDEN // HEADS  # K
FEED_FORWARD = 1536  # F
VOCAB = 30522
MAX_POSITIONS = 512
LAYER_NORM_EPS = 1e-12  # the model's config.json
NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize
MASKED = -1e30  # added to the scores of padding keys (finite: an all-padding row stays NaN-free)

Params = dict[str, Any]


def bert_params(t: dict[str, np.ndarray]) -> Params:
    """The checkpoint's tensors (PyTorch layout: dense weight is (out, in)) -> the pytree
    this file computes with: dense weights transposed to (in, out), Q/K/V fused, the
    six layers stacked on a leading axis."""
    layers = []
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        qkv = [t[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")]
        layers.append(
            {
                "qkv_w": np.concatenate(qkv, axis=1),  # (D, 3D)
                "qkv_b": np.concatenate(
                    [t[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
                ),  # (3D,)
                "out_w": t[p + "attention.output.dense.weight"].T,  # (D, D)
                "out_b": t[p + "attention.output.dense.bias"],
                "ln1_g": t[p + "attention.output.LayerNorm.weight"],
                "ln1_b": t[p + "attention.output.LayerNorm.bias"],
                "ff1_w": t[p + "intermediate.dense.weight"].T,  # (D, F)
                "ff1_b": t[p + "intermediate.dense.bias"],
                "ff2_w": t[p + "output.dense.weight"].T,  # (F, D)
                "ff2_b": t[p + "output.dense.bias"],
                "ln2_g": t[p + "output.LayerNorm.weight"],
                "ln2_b": t[p + "output.LayerNorm.bias"],
            }
        )
    return {
        "word": t["embeddings.word_embeddings.weight"],  # (VOCAB, D)
        "position": t["embeddings.position_embeddings.weight"],  # (MAX_POSITIONS, D)
        "token_type": t["embeddings.token_type_embeddings.weight"][0],  # (D,): one segment
        "emb_ln_g": t["embeddings.LayerNorm.weight"],
        "emb_ln_b": t["embeddings.LayerNorm.bias"],
        # each (LAYERS, ...): one scanned layer body compiles once, not six times
        "layers": {k: np.stack([la[k] for la in layers]).astype(np.float32) for k in layers[0]},
    }


def _layer_norm(x: jax.Array, gain: jax.Array, bias: jax.Array) -> jax.Array:
    mean = x.mean(-1, keepdims=True)  # (B, T, 1)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS) * gain + bias


def _layer(x: jax.Array, bias: jax.Array, p: Params) -> jax.Array:
    b, t, _ = x.shape
    qkv = x @ p["qkv_w"] + p["qkv_b"]  # (B, T, 3D)
    qkv = qkv.reshape(b, t, 3, HEADS, HEAD_DIM)  # (B, T, 3, H, K)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, K) each
    scores = jnp.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(HEAD_DIM)  # (B, H, T, T)
    weights = jax.nn.softmax(scores + bias, axis=-1)  # bias (B, 1, 1, T): padding keys off
    context = jnp.einsum("bhqs,bshk->bqhk", weights, v).reshape(b, t, HIDDEN)  # (B, T, D)
    x = _layer_norm(x + context @ p["out_w"] + p["out_b"], p["ln1_g"], p["ln1_b"])
    hidden = jax.nn.gelu(x @ p["ff1_w"] + p["ff1_b"], approximate=False)  # (B, T, F), erf GELU
    return _layer_norm(x + hidden @ p["ff2_w"] + p["ff2_b"], p["ln2_g"], p["ln2_b"])


def encode_tokens(params: Params, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """(B, T) token ids and (B, T) 0/1 mask -> (B, D) unit sentence embeddings.

    A row with no real token (batch padding) comes out as zeros.
    """
    t = ids.shape[1]
    x = params["word"][ids] + params["position"][:t] + params["token_type"]  # (B, T, D)
    x = _layer_norm(x, params["emb_ln_g"], params["emb_ln_b"])
    m = mask.astype(jnp.float32)  # (B, T)
    bias = ((1.0 - m) * MASKED)[:, None, None, :]  # (B, 1, 1, T)
    x, _ = jax.lax.scan(lambda h, p: (_layer(h, bias, p), None), x, params["layers"])
    summed = jnp.einsum("btd,bt->bd", x, m)  # (B, D): mean pooling over real tokens
    pooled = summed / jnp.maximum(m.sum(-1, keepdims=True), 1e-9)  # (B, D)
    norm = jnp.sqrt(jnp.einsum("bd,bd->b", pooled, pooled))[:, None]  # (B, 1)
    return pooled / jnp.maximum(norm, NORMALIZE_EPS)


def layer_flops(batch: int, seq: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of the dense and attention matmuls for one (B, T)
    bucket: what the FLOP-rate figures count (padding included)."""
    tokens = batch * seq
    dense = 2 * tokens * (HIDDEN * 3 * HIDDEN + HIDDEN * HIDDEN + 2 * HIDDEN * FEED_FORWARD)
    attention = 2 * 2 * batch * HEADS * seq * seq * HEAD_DIM
    return LAYERS * (dense + attention)
