"""Cost-quality curves and the metrics reported by `tinydancer eval`.

A router traces a curve of (mean cost per prompt in USD, mean quality) points as its
cost-quality knob moves. Metrics read the curve's *non-decreasing upper convex hull*
(any two points can be mixed at random, and paying more never has to lose quality):

* AIQ: the mean of the hull over the single agents' cost range [cheapest, most
  expensive], counting 0 below the curve's cheapest point (linear cost axis).
* APGR: the mean over the same range of (hull - q_weak) / (q_strong - q_weak), with weak =
  the cheapest single agent and strong = the best single agent.
* cost_to_reach[X]: the lowest cost at which the hull reaches X % of the best single
  agent's quality (None if it never does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["aiq", "apgr", "cost_to_reach", "hull", "hull_value", "summarize"]

_GRID = 4001


def hull(points: np.ndarray) -> np.ndarray:
    """Vertices (ascending cost) of the non-decreasing upper convex hull of (cost, quality) points."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return pts
    # Sort by cost, highest quality first among equal costs.
    pts = pts[np.lexsort((-pts[:, 1], pts[:, 0]))]
    upper: list[np.ndarray] = []
    for p in pts:
        if upper and p[1] <= upper[-1][1]:
            continue  # costs at least as much for no more quality: dominated
        while len(upper) >= 2:
            (x1, y1), (x2, y2) = upper[-2], upper[-1]
            # drop the middle point if it lies on or below the chord from upper[-2] to p
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                upper.pop()
            else:
                break
        upper.append(p)
    return np.asarray(upper)


def hull_value(vertices: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """The hull at the given costs: 0 below its cheapest point, flat after its last."""
    costs = np.asarray(costs, np.float64)
    if len(vertices) == 0:
        return np.zeros_like(costs)
    values = np.interp(costs, vertices[:, 0], vertices[:, 1])  # flat beyond both ends
    return np.where(costs < vertices[0, 0], 0.0, values)


def _grid(lo: float, hi: float) -> np.ndarray:
    return np.linspace(lo, hi, _GRID)


def _mean_over(values_at: Any, lo: float, hi: float) -> float:
    if hi <= lo:  # every single agent costs the same: the range is one point
        return float(values_at(np.array([lo]))[0])
    grid = _grid(lo, hi)
    return float(np.trapezoid(values_at(grid), grid) / (hi - lo))


def aiq(points: np.ndarray, cost_range: tuple[float, float]) -> float:
    vertices = hull(points)
    return _mean_over(lambda c: hull_value(vertices, c), *cost_range)


def apgr(
    points: np.ndarray, cost_range: tuple[float, float], weak: float, strong: float
) -> float | None:
    """None when the cheapest agent is also the best (there is no gap to recover)."""
    if strong <= weak:
        return None
    vertices = hull(points)
    return _mean_over(lambda c: (hull_value(vertices, c) - weak) / (strong - weak), *cost_range)


def cost_to_reach(points: np.ndarray, target: float) -> float | None:
    vertices = hull(points)
    if len(vertices) == 0 or vertices[-1, 1] < target:
        return None
    if vertices[0, 1] >= target:
        return float(vertices[0, 0])
    i = int(np.argmax(vertices[:, 1] >= target))
    (x1, y1), (x2, y2) = vertices[i - 1], vertices[i]
    return float(x1 + (target - y1) * (x2 - x1) / (y2 - y1))


def summarize(
    points: Sequence[Sequence[float]] | np.ndarray, singles: np.ndarray
) -> dict[str, Any]:
    """The `M` object of `tinydancer eval --json` for one curve.

    singles: (A, 2) single-agent (cost, quality) points of the same test split.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    cost_range = (float(singles[:, 0].min()), float(singles[:, 0].max()))
    weak = float(singles[np.argmin(singles[:, 0]), 1])
    best = float(singles[:, 1].max())
    return {
        "aiq": aiq(pts, cost_range),
        "apgr": apgr(pts, cost_range, weak, best),
        "cost_to_reach": {str(x): cost_to_reach(pts, best * x / 100) for x in (50, 80, 95, 100)},
        "best_quality": float(np.nanmax(pts[:, 1])) if np.isfinite(pts[:, 1]).any() else 0.0,
        "curve": [[float(c), float(q)] for c, q in pts],
    }
