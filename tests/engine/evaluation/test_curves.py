"""tinydancer.evaluation.curves: hulls, AIQ, APGR, cost to reach, summaries (values by hand)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tinydancer.evaluation.curves import aiq, apgr, cost_to_reach, hull, hull_value, summarize

# Two single agents: weak = cheap (cost 1, quality 0.4), strong = dear (cost 3, quality 0.8).
SINGLES = np.array([[1.0, 0.4], [3.0, 0.8]])
RANGE = (1.0, 3.0)
STEP = (RANGE[1] - RANGE[0]) / 4000  # the integration grid's spacing


# -- hull --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "vertices"),
    [
        ([[1, 0.5], [2, 0.7], [3, 0.8]], [[1, 0.5], [2, 0.7], [3, 0.8]]),
        ([[1, 0.5], [2, 0.4], [3, 0.5], [4, 0.9]], [[1, 0.5], [4, 0.9]]),
        ([[1, 0.5], [2, 0.55], [3, 0.8]], [[1, 0.5], [3, 0.8]]),
        ([[0, 0.0], [1, 0.25], [2, 0.5]], [[0, 0.0], [2, 0.5]]),
        ([[3, 0.8], [1, 0.4], [1, 0.5], [2, 0.75]], [[1, 0.5], [2, 0.75], [3, 0.8]]),
        ([[1, 0.5], [np.nan, 0.9], [2, np.inf], [2, 0.6]], [[1, 0.5], [2, 0.6]]),
        ([[2, 0.3]], [[2, 0.3]]),
        ([[1, 0.9], [2, 0.5], [3, 0.2]], [[1, 0.9]]),
    ],
    ids=[
        "concave-kept",
        "dominated-dropped",
        "below-chord-dropped",
        "on-chord-dropped",
        "unsorted-equal-costs",
        "non-finite-dropped",
        "single",
        "decreasing",
    ],
)
def test_hull_of_known_point_sets(points, vertices):
    np.testing.assert_allclose(hull(np.array(points, float)), vertices)


def test_hull_of_nothing():
    assert hull(np.zeros((0, 2))).shape == (0, 2)
    assert hull(np.array([[np.nan, np.nan]])).shape == (0, 2)


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"cloud{s}")
def test_hull_is_increasing_concave_and_covers_every_point(seed):
    points = np.random.default_rng(seed).uniform(0, 1, (60, 2))
    vertices = hull(points)
    assert np.all(np.diff(vertices[:, 0]) > 0)
    assert np.all(np.diff(vertices[:, 1]) > 0)  # non-decreasing (strictly, after dropping ties)
    slopes = np.diff(vertices[:, 1]) / np.diff(vertices[:, 0])
    assert np.all(np.diff(slopes) < 0)  # concave
    assert vertices[0, 0] == points[:, 0].min()  # the cheapest point always starts it
    assert vertices[-1, 1] == points[:, 1].max()  # ... and the best one ends it
    assert np.all(points[:, 1] <= hull_value(vertices, points[:, 0]) + 1e-12)
    assert {tuple(v) for v in vertices} <= {tuple(p) for p in points}


# -- hull_value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "value"),
    [(0.0, 0.0), (0.999, 0.0), (1.0, 0.4), (2.0, 0.6), (2.5, 0.7), (3.0, 0.8), (100.0, 0.8)],
    ids=["far-below", "just-below", "first", "middle", "three-quarters", "last", "far-after"],
)
def test_hull_value(cost, value):
    assert hull_value(hull(SINGLES), np.array([cost]))[0] == pytest.approx(value, abs=1e-12)


def test_hull_value_of_an_empty_hull_is_zero():
    np.testing.assert_array_equal(hull_value(hull(np.zeros((0, 2))), np.array([0.0, 5.0])), 0.0)


# -- aiq / apgr --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "cost_range", "expected"),
    [
        ([[2.0, 0.6]], RANGE, 0.6 * (3 - 2) / 2),  # 0 on [1, 2), 0.6 on [2, 3]
        ([[1.0, 0.6]], RANGE, 0.6),  # flat over the whole range
        (SINGLES, RANGE, (0.4 + 0.8) / 2),  # a straight line: its midpoint
        (SINGLES, (0.0, 4.0), (0 * 1 + 0.6 * 2 + 0.8 * 1) / 4),  # 0 below, flat after
        ([[1, 0.4], [2, 0.7], [3, 0.8]], RANGE, ((0.4 + 0.7) / 2 + (0.7 + 0.8) / 2) / 2),
        ([[0.5, 1.0]], RANGE, 1.0),  # cheaper than the range: counts everywhere
        ([[4.0, 1.0]], RANGE, 0.0),  # dearer than the range: never counts
    ],
    ids=[
        "single-point-inside",
        "single-point-at-start",
        "line",
        "line-wider-range",
        "concave",
        "point-before",
        "point-after",
    ],
)
def test_aiq_by_hand(points, cost_range, expected):
    # The trapezoid rule smears a jump over one grid step: at most quality * step / width.
    assert aiq(np.array(points, float), cost_range) == pytest.approx(expected, abs=STEP)


def test_aiq_of_a_line_is_exact():
    assert aiq(SINGLES, RANGE) == pytest.approx(0.6, abs=1e-12)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([[1.0, 0.4]], 0.0),  # the weak agent alone closes none of the gap
        (SINGLES, 0.5),  # mixing weak and strong: (x - 1) / 2 on average
        ([[1.0, 0.8]], 1.0),  # strong quality at weak cost: the whole gap
        ([[3.0, 0.8]], -1.0),  # strong alone: nothing (0 quality) until cost 3
        ([[1, 0.4], [2, 0.7], [3, 0.8]], (0.65 - 0.4) / 0.4),
    ],
    ids=["weak-alone", "weak-and-strong", "ideal", "strong-alone", "concave"],
)
def test_apgr_by_hand(points, expected):
    result = apgr(np.array(points, float), RANGE, weak=0.4, strong=0.8)
    assert result == pytest.approx(expected, abs=2 * STEP)


def test_weak_agent_alone_is_exactly_zero():
    assert apgr(np.array([[1.0, 0.4]]), RANGE, weak=0.4, strong=0.8) == 0.0


# -- cost_to_reach -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "cost"),
    [
        (0.0, 1.0),
        (0.4, 1.0),
        (0.55, 1.5),
        (0.64, 1.8),
        (0.7, 2.0),
        (0.76, 2.6),
        (0.8, 3.0),
        (0.81, None),
    ],
    ids=[
        "zero",
        "first-vertex",
        "first-segment",
        "first-segment-b",
        "vertex",
        "second-segment",
        "best",
        "unreachable",
    ],
)
def test_cost_to_reach(target, cost):
    points = np.array([[1, 0.4], [2, 0.7], [3, 0.8], [2.5, 0.6]])  # (2.5, 0.6) is dominated
    result = cost_to_reach(points, target)
    assert result == (None if cost is None else pytest.approx(cost, abs=1e-12))


def test_cost_to_reach_on_an_empty_curve():
    assert cost_to_reach(np.zeros((0, 2)), 0.1) is None


# -- summarize ---------------------------------------------------------------------------


def test_summarize_by_hand():
    curve = [[1.0, 0.4], [2.0, 0.7], [3.0, 0.8]]
    summary = summarize(curve, SINGLES)
    assert set(summary) == {"aiq", "apgr", "cost_to_reach", "best_quality", "curve"}
    assert summary["aiq"] == pytest.approx(0.65, abs=1e-9)
    assert summary["apgr"] == pytest.approx(0.625, abs=1e-9)
    assert list(summary["cost_to_reach"]) == ["50", "80", "95", "100"]
    reach = summary["cost_to_reach"]
    assert reach["50"] == pytest.approx(1.0)  # 0.4: the first point
    assert reach["80"] == pytest.approx(1.8)  # 0.64 on the first segment
    assert reach["95"] == pytest.approx(2.6)  # 0.76 on the second
    assert reach["100"] == pytest.approx(3.0)
    assert summary["best_quality"] == 0.8
    assert summary["curve"] == curve
    json.dumps(summary, allow_nan=False)


def test_summarize_the_singles_themselves():
    summary = summarize(SINGLES, SINGLES)
    assert summary["aiq"] == pytest.approx(0.6)
    assert summary["apgr"] == pytest.approx(0.5)
    assert summary["cost_to_reach"]["100"] == pytest.approx(3.0)


def test_summarize_an_empty_curve():
    summary = summarize(np.zeros((0, 2)), SINGLES)
    assert summary["aiq"] == 0.0
    assert summary["apgr"] == pytest.approx(-1.0)  # hull 0 everywhere: (0 - 0.4) / 0.4
    assert summary["cost_to_reach"] == {"50": None, "80": None, "95": None, "100": None}
    assert summary["best_quality"] == 0.0
    assert summary["curve"] == []


def test_summarize_a_curve_that_never_reaches_the_best():
    summary = summarize([[1.0, 0.5], [2.0, 0.7]], SINGLES)
    reach = summary["cost_to_reach"]
    assert reach["50"] == pytest.approx(1.0)
    assert reach["80"] == pytest.approx(1.7)  # 0.64 between (1, 0.5) and (2, 0.7)
    assert reach["95"] is None and reach["100"] is None


@pytest.mark.parametrize(
    "singles",
    [[[1.0, 0.8], [2.0, 0.5]], [[0.0, 0.4], [0.0, 0.8]], [[1.0, 0.6]]],
    ids=["cheapest-is-best", "all-same-cost", "one-agent"],
)
def test_summarize_degenerate_singles(singles):
    summary = summarize(np.array(singles), np.array(singles))
    for key in ("aiq", "apgr"):
        assert summary[key] is None or math.isfinite(summary[key]), key


def test_best_quality_ignores_non_finite_points():
    summary = summarize([[1.0, 0.5], [np.nan, np.nan], [2.0, 0.7]], SINGLES)
    assert summary["best_quality"] == 0.7
