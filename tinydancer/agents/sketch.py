"""Streaming statistics with optional exponential forgetting.

`QuantileSketch` is a log-bucketed histogram in the DDSketch family: values in
[min_value, max_value] fall into buckets whose bounds grow by gamma = (1+a)/(1-a), so any
quantile is returned with relative error <= a (1 % by default) using a fixed ~1,700
buckets. Both it and `DecayingMean` forget old evidence at a per-observation `decay`
(1.0 = never): each new observation counts 1/decay times more than the previous one,
implemented by growing the unit weight (O(1) per update) and renormalising rarely.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DecayingMean", "QuantileSketch", "decay_for_half_life"]

_RENORMALISE_AT = 1e150


def decay_for_half_life(half_life: float | None) -> float:
    """Per-observation decay so that an observation's weight halves after `half_life` newer ones."""
    if half_life is None or half_life == math.inf:
        return 1.0
    if not (isinstance(half_life, int | float) and half_life > 0):  # also refuses NaN
        raise ValueError(
            f"half_life: got {half_life!r}; expected a number of observations > 0 (or None)"
        )
    return 0.5 ** (1.0 / half_life)


def _check_decay(decay: float) -> None:
    if not (isinstance(decay, int | float) and 0.0 < decay <= 1.0):
        raise ValueError(f"decay: got {decay!r}; expected a factor in (0, 1] (1 = never forget)")


def _unit_runs(stat: DecayingMean | QuantileSketch, n: int) -> Iterator[tuple[int, np.ndarray]]:
    """The unit weights `add` would use for `n` more values, in runs that end where it
    renormalises (the statistic's unit is advanced, and renormalised, after each run)."""
    start = 0
    while start < n:
        if stat.decay < 1.0:
            with np.errstate(over="ignore"):
                units = stat._unit * stat.decay ** -np.arange(1.0, n - start + 1)
            over = units > _RENORMALISE_AT
            if over.any():
                units = units[: int(np.argmax(over)) + 1]
        else:
            units = np.full(n - start, stat._unit)
        yield start, units
        stat._unit = float(units[-1])
        if stat._unit > _RENORMALISE_AT:
            if isinstance(stat, DecayingMean):
                stat.total /= stat._unit
                stat.weight /= stat._unit
            else:
                stat.counts /= stat._unit
            stat._unit = 1.0
        start += len(units)


@dataclass
class DecayingMean:
    decay: float = 1.0
    total: float = 0.0
    weight: float = 0.0
    _unit: float = 1.0

    def __post_init__(self) -> None:
        _check_decay(self.decay)

    def add(self, value: float) -> None:
        if self.decay < 1.0:
            self._unit /= self.decay
        self.total += value * self._unit
        self.weight += self._unit
        if self._unit > _RENORMALISE_AT:
            self.total /= self._unit
            self.weight /= self._unit
            self._unit = 1.0

    def add_many(self, values: np.ndarray) -> None:
        """`add` each value in order (vectorised; equal to the loop up to rounding)."""
        values = np.asarray(values, np.float64)
        for start, units in _unit_runs(self, len(values)):
            self.total += float(np.dot(values[start : start + len(units)], units))
            self.weight += float(units.sum())

    @property
    def mean(self) -> float | None:
        return self.total / self.weight if self.weight > 0 else None

    @property
    def effective_count(self) -> float:
        return self.weight / self._unit

    def to_dict(self) -> dict[str, float]:
        return {"decay": self.decay, "total": self.total, "weight": self.weight, "unit": self._unit}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> DecayingMean:
        return cls(
            decay=data["decay"],
            total=data["total"],
            weight=data["weight"],
            _unit=data.get("unit", 1.0),
        )


@dataclass
class QuantileSketch:
    relative_accuracy: float = 0.01
    min_value: float = 0.01
    max_value: float = 1e7
    decay: float = 1.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _unit: float = 1.0

    def __post_init__(self) -> None:
        _check_decay(self.decay)
        self._gamma = (1 + self.relative_accuracy) / (1 - self.relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._offset = math.floor(math.log(self.min_value) / self._log_gamma)
        size = math.ceil(math.log(self.max_value) / self._log_gamma) - self._offset + 1
        if self.counts.size == 0:
            self.counts = np.zeros(size, np.float64)

    def _index(self, value: float) -> int:
        clipped = min(max(value, self.min_value), self.max_value)
        return math.ceil(math.log(clipped) / self._log_gamma) - self._offset

    def add(self, value: float) -> None:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"sketch values must be finite and >= 0, got {value!r}")
        if self.decay < 1.0:
            self._unit /= self.decay
        self.counts[self._index(value)] += self._unit
        if self._unit > _RENORMALISE_AT:
            self.counts /= self._unit
            self._unit = 1.0

    def add_many(self, values: np.ndarray) -> None:
        """`add` each value in order (vectorised; equal to the loop up to rounding)."""
        values = np.asarray(values, np.float64)
        if not np.all(np.isfinite(values) & (values >= 0)):
            bad = values[~(np.isfinite(values) & (values >= 0))][0]
            raise ValueError(f"sketch values must be finite and >= 0, got {bad!r}")
        clipped = np.clip(values, self.min_value, self.max_value)
        ratio = np.log(clipped) / self._log_gamma
        # numpy's log may differ from math.log (which `add` uses) in the last bit: where
        # that could move a value across a bucket edge, take math.log's
        edge = np.flatnonzero(np.abs(ratio - np.round(ratio)) < 1e-9)
        ratio[edge] = [math.log(v) / self._log_gamma for v in clipped[edge].tolist()]
        index = np.ceil(ratio).astype(np.int64) - self._offset
        for start, units in _unit_runs(self, len(values)):
            chunk = index[start : start + len(units)]
            self.counts += np.bincount(chunk, weights=units, minlength=len(self.counts))

    @property
    def count(self) -> float:
        """Effective number of observations (decayed)."""
        return float(self.counts.sum() / self._unit)

    def quantile(self, q: float) -> float | None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile: got {q!r}; expected a level in [0, 1]")
        total = self.counts.sum()
        if total <= 0:
            return None
        rank = max(q * total, total * 1e-12)  # q = 0: the first non-empty bucket
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        index = min(index, len(self.counts) - 1)
        # bucket i holds (gamma^(i-1), gamma^i]; its midpoint in relative terms:
        upper = self._gamma ** (index + self._offset)
        return float(2 * upper / (self._gamma + 1))

    def to_dict(self) -> dict[str, Any]:
        nonzero = np.flatnonzero(self.counts)
        return {
            "relative_accuracy": self.relative_accuracy,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "decay": self.decay,
            "index": nonzero.tolist(),
            "counts": self.counts[nonzero].tolist(),
            "unit": self._unit,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileSketch:
        sketch = cls(data["relative_accuracy"], data["min_value"], data["max_value"], data["decay"])
        sketch._unit = float(data.get("unit", 1.0))
        sketch.counts[np.asarray(data["index"], dtype=np.int64)] = data["counts"]
        return sketch
