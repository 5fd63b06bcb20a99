"""The training loop shared by both modes: optax, early stopping, dense -> sparse -> INT8.

`train_fastgrnn` runs the whole pipeline:

1. fit dense weights (Adam with weight decay, minibatches, early stopping on a
   validation slice, best weights kept);
2. prune the W/U matrices to the target sparsity by magnitude and retrain with the
   pruning masks held fixed;
3. quantize to INT8 (`quantization.quantize`).

The loss is supplied by the caller as ``loss(params, *batch_arrays) -> (per-row loss)``
so weighting (per-row weights, missing-label masks) stays with the mode that knows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tinydancer.model.fastgrnn import FastGRNNConfig, init_params, matrix_names
from tinydancer.model.quantization import prune_by_magnitude, quantize

__all__ = ["FitResult", "FitSettings", "fit", "train_fastgrnn"]

LossFn = Callable[..., jax.Array]


@dataclass(frozen=True)
class FitSettings:
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 15
    sparsity: float = 0.5
    retrain_epochs: int = 60
    seed: int = 0


@dataclass
class FitResult:
    params: dict[str, np.ndarray]
    best_val_loss: float
    epochs: int
    history: list[float] = field(default_factory=list)


def fit(
    params: Mapping[str, Any],
    loss: LossFn,
    train: Sequence[np.ndarray],
    val: Sequence[np.ndarray],
    settings: FitSettings,
    *,
    max_epochs: int | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
) -> FitResult:
    """Minibatch AdamW with early stopping on the mean validation loss."""
    # optax mixes int step counters with floats; keep JAX's standard promotion here even
    # when a caller (the test suite) runs with strict promotion.
    with jax.numpy_dtype_promotion("standard"):
        return _fit(params, loss, train, val, settings, max_epochs=max_epochs, masks=masks)


def _fit(
    params: Mapping[str, Any],
    loss: LossFn,
    train: Sequence[np.ndarray],
    val: Sequence[np.ndarray],
    settings: FitSettings,
    *,
    max_epochs: int | None,
    masks: Mapping[str, np.ndarray] | None,
) -> FitResult:
    optimizer = optax.adamw(settings.learning_rate, weight_decay=settings.weight_decay)
    current = {k: jnp.asarray(v) for k, v in params.items()}
    mask_arrays = {k: jnp.asarray(v) for k, v in (masks or {}).items()}
    state = optimizer.init(current)

    def apply_masks(p: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return {k: v * mask_arrays[k] if k in mask_arrays else v for k, v in p.items()}

    @jax.jit
    def step(p: dict[str, jax.Array], s: Any, *batch: jax.Array) -> tuple[Any, Any, jax.Array]:
        value, grads = jax.value_and_grad(lambda q: loss(q, *batch).mean())(p)
        updates, s = optimizer.update(grads, s, p)
        return apply_masks(optax.apply_updates(p, updates)), s, value

    @jax.jit
    def val_loss(p: dict[str, jax.Array], *batch: jax.Array) -> jax.Array:
        return loss(p, *batch).mean()

    current = apply_masks(current)
    train_arrays = [jnp.asarray(a) for a in train]
    val_arrays = [jnp.asarray(a) for a in val]
    n = int(train_arrays[0].shape[0])
    batch_size = min(settings.batch_size, n)
    rng = np.random.default_rng(settings.seed)
    best = float(val_loss(current, *val_arrays))
    best_params = current
    history = [best]
    since_best = 0
    epochs = max_epochs if max_epochs is not None else settings.max_epochs
    epoch = 0
    for epoch in range(1, epochs + 1):  # noqa: B007 - the last epoch is reported
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            index = jnp.asarray(order[start : start + batch_size])
            current, state, _ = step(current, state, *(a[index] for a in train_arrays))
        value = float(val_loss(current, *val_arrays))
        history.append(value)
        if value < best - 1e-6:
            best, best_params, since_best = value, current, 0
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    return FitResult({k: np.asarray(v) for k, v in best_params.items()}, best, epoch, history)


def train_fastgrnn(
    config: FastGRNNConfig,
    loss: LossFn,
    train: Sequence[np.ndarray],
    val: Sequence[np.ndarray],
    settings: FitSettings,
    *,
    prunable: Sequence[str] | None = None,
    initial: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Dense fit -> magnitude pruning -> masked retrain -> INT8. Returns (stored, summary)."""
    key = jax.random.PRNGKey(settings.seed)
    start = initial if initial is not None else init_params(config, key=key)
    dense = fit(start, loss, train, val, settings)
    names = (
        list(prunable)
        if prunable is not None
        else [m for m in matrix_names(config) if m != "head.weight"]
    )
    summary: dict[str, Any] = {"dense_val_loss": dense.best_val_loss, "dense_epochs": dense.epochs}
    params = dense.params
    if settings.sparsity > 0 and names:
        pruned, masks = prune_by_magnitude(params, names, settings.sparsity)
        retrained = fit(
            pruned, loss, train, val, settings, max_epochs=settings.retrain_epochs, masks=masks
        )
        params = retrained.params
        summary |= {
            "sparse_val_loss": retrained.best_val_loss,
            "sparse_epochs": retrained.epochs,
            "sparsity_target": settings.sparsity,
            "pruned": names,
        }
    stored = quantize(params, matrix_names(config))
    summary["float_params"] = params
    return stored, summary
