"""tinydancer.agents.bandit: priors, updates towards outcomes, forgetting, sampling factor, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from tinydancer.agents import bandit
from tinydancer.agents.bandit import BanditConfig, Posterior

UNKNOWN = bandit.features(0.0, known_to_model=False)  # [1, 0]: only the offset is learnt
# Explicit values, so that tuning the defaults does not change what these tests pin.
BASE = {
    "half_life_outcomes": 200.0,
    "noise_sd": 0.45,
    "prior_sd_offset": 0.1,
    "prior_sd_slope": 0.25,
    "unknown_prior_sd": 0.25,
    "exploration": 1.0,
}


def make_config(**changes) -> BanditConfig:
    return BanditConfig(**{**BASE, **changes})


def run(posterior: Posterior, qualities, config: BanditConfig, phi=UNKNOWN) -> Posterior:
    for quality in qualities:
        posterior = bandit.update(posterior, phi, float(quality), config)
    return posterior


def offset(posterior: Posterior) -> float:
    return float(bandit.posterior_mean(posterior)[0])


# -- prior and features ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "expected_quality", "mean"),
    [
        (True, None, [0.0, 1.0]),
        (True, 0.9, [0.0, 1.0]),
        (False, None, [0.5, 0.0]),
        (False, 0.8, [0.8, 0.0]),
        (False, 0.0, [0.0, 0.0]),
    ],
    ids=["known", "known-ignores-expected", "unknown-default", "unknown-expected", "unknown-zero"],
)
def test_prior_mean(known, expected_quality, mean):
    prior = bandit.prior(make_config(), known_to_model=known, expected_quality=expected_quality)
    np.testing.assert_allclose(bandit.posterior_mean(prior), mean, atol=1e-12)
    assert prior.outcomes == 0


@pytest.mark.parametrize(
    ("known", "sds"), [(True, [0.1, 0.25]), (False, [0.25, 1e-3])], ids=["known", "unknown"]
)
def test_prior_spread(known, sds):
    prior = bandit.prior(make_config(), known_to_model=known)
    np.testing.assert_allclose(np.linalg.inv(prior.precision), np.diag(np.square(sds)), rtol=1e-9)
    np.testing.assert_array_equal(prior.precision, prior.prior_precision)
    np.testing.assert_array_equal(prior.shift, prior.prior_shift)


@pytest.mark.parametrize(
    ("p_model", "known", "phi"),
    [(0.7, True, [1.0, 0.7]), (0.7, False, [1.0, 0.0])],
    ids=["known", "unknown"],
)
def test_features(p_model, known, phi):
    np.testing.assert_array_equal(bandit.features(p_model, known), phi)


# -- update ------------------------------------------------------------------------------


@pytest.mark.parametrize("observed", [0.0, 0.2, 0.9, 1.0], ids=lambda q: f"q={q}")
def test_update_moves_the_mean_towards_the_outcome(observed):
    config = make_config()
    posterior = bandit.prior(config, known_to_model=False)
    previous = offset(posterior)
    for _ in range(5):
        posterior = bandit.update(posterior, UNKNOWN, observed, config)
        current = offset(posterior)
        assert abs(current - observed) < abs(previous - observed)  # closer every time ...
        assert min(previous, observed) <= current <= max(previous, observed)  # ... never past it
        previous = current
    assert posterior.outcomes == 5


def test_one_outcome_is_the_conjugate_update():
    """One update equals the textbook Gaussian posterior (the first discount is a no-op)."""
    config = make_config()
    prior = bandit.prior(config, known_to_model=False)
    posterior = bandit.update(prior, UNKNOWN, 1.0, config)
    prior_precision, noise_precision = 1 / 0.25**2, 1 / 0.45**2
    expected = (prior_precision * 0.5 + noise_precision * 1.0) / (prior_precision + noise_precision)
    assert offset(posterior) == pytest.approx(expected, rel=1e-12)


def test_update_is_pure():
    config = make_config()
    prior = bandit.prior(config, known_to_model=True)
    precision = prior.precision.copy()
    posterior = bandit.update(prior, bandit.features(0.3, True), 0.9, config)
    np.testing.assert_array_equal(prior.precision, precision)
    assert prior.outcomes == 0 and posterior.outcomes == 1
    assert posterior.prior_precision is prior.prior_precision


def test_known_agent_learns_a_correction_to_the_model():
    """Quality = 0.2 + 0.5 p_model, not the prior's 0 + 1 p_model: the fit moves there."""
    config = make_config()
    posterior = bandit.prior(config, known_to_model=True)
    rng = np.random.default_rng(0)
    for p_model in rng.uniform(0, 1, 2_000):
        posterior = bandit.update(
            posterior, bandit.features(p_model, True), 0.2 + 0.5 * p_model, config
        )
    theta = bandit.posterior_mean(posterior)
    assert theta @ [1.0, 0.5] == pytest.approx(0.45, abs=0.01)  # right at the typical p_model
    assert theta[0] > 0.0 and theta[1] < 0.9  # offset up, slope down from the prior's [0, 1]


# -- forgetting --------------------------------------------------------------------------


def updates_until(
    posterior: Posterior, quality: float, config: BanditConfig, below: float, limit: int
) -> int | None:
    for n in range(1, limit + 1):
        posterior = bandit.update(posterior, UNKNOWN, quality, config)
        if offset(posterior) < below:
            return n
    return None


@pytest.mark.parametrize("half_life", [25, 50, 100], ids=lambda h: f"h={h}")
def test_mean_follows_a_quality_drop_within_one_half_life(half_life):
    """Quality drops 0.9 -> 0.1: the mean crosses the midpoint after ~half_life outcomes."""
    config = make_config(half_life_outcomes=half_life)
    posterior = run(bandit.prior(config, known_to_model=False), [0.9] * (10 * half_life), config)
    assert offset(posterior) > 0.85
    crossing = updates_until(posterior, 0.1, config, below=0.5, limit=10 * half_life)
    assert crossing is not None and abs(crossing - half_life) <= 1


def test_mean_follows_within_a_few_hundred_updates():
    config = make_config(half_life_outcomes=50)
    posterior = run(bandit.prior(config, known_to_model=False), [0.9] * 1_000, config)
    assert updates_until(posterior, 0.1, config, below=0.2, limit=300) is not None
    posterior = run(posterior, [0.1] * 400, config)
    assert offset(posterior) == pytest.approx(0.1, abs=0.03)  # the prior's pull is small


def test_shorter_half_life_follows_faster():
    crossings = []
    for half_life in (20, 80, 320):
        config = make_config(half_life_outcomes=half_life)
        posterior = run(bandit.prior(config, known_to_model=False), [0.9] * 1_000, config)
        crossings.append(updates_until(posterior, 0.1, config, below=0.3, limit=2_000))
    assert None not in crossings
    assert crossings == sorted(crossings) and len(set(crossings)) == 3


def test_without_forgetting_the_mean_lags():
    """The forgetting checks can fail: with an enormous half-life the mean stays high."""
    config = make_config(half_life_outcomes=1e9)
    posterior = run(bandit.prior(config, known_to_model=False), [0.9] * 1_000, config)
    assert updates_until(posterior, 0.1, config, below=0.5, limit=300) is None


@pytest.mark.parametrize("idle_half_life", [50.0, 400.0])
def test_idle_evidence_halves_after_the_idle_half_life(idle_half_life):
    config = make_config(idle_half_life_outcomes=idle_half_life)
    prior = bandit.prior(config, known_to_model=False)
    learnt = run(prior, [0.1] * 60, config)
    evidence = learnt.precision - prior.precision
    aged = bandit.age(learnt, int(idle_half_life), config)
    np.testing.assert_allclose(aged.precision - prior.precision, evidence / 2, rtol=1e-12)
    assert offset(prior) > offset(aged) > offset(learnt)  # back towards the prior, not all the way
    assert aged.outcomes == learnt.outcomes and aged.updated_at == learnt.updated_at
    assert bandit.age(learnt, 0, config) is learnt


def test_idle_ageing_can_be_switched_off():
    config = make_config(idle_half_life_outcomes=None)
    learnt = run(bandit.prior(config, known_to_model=False), [0.1] * 60, config)
    assert bandit.age(learnt, 10_000, config) is learnt


# -- sampling ----------------------------------------------------------------------------


@pytest.fixture(params=["known-prior", "unknown-prior", "after-updates"])
def posterior(request) -> Posterior:
    config = make_config()
    if request.param == "known-prior":
        return bandit.prior(config, known_to_model=True)
    if request.param == "unknown-prior":
        return bandit.prior(config, known_to_model=False)
    rng = np.random.default_rng(1)
    p = bandit.prior(config, known_to_model=True)
    for p_model in rng.uniform(0, 1, 50):
        p = bandit.update(p, bandit.features(p_model, True), float(rng.uniform()), config)
    return p


@pytest.mark.parametrize("exploration", [0.0, 0.5, 1.0, 2.0], ids=lambda e: f"explore{e}")
def test_sample_factor_is_scaled_cholesky_of_covariance(posterior, exploration):
    config = make_config(exploration=exploration)
    factor = bandit.sample_factor(posterior, config)
    covariance = np.linalg.inv(posterior.precision)
    assert factor.shape == (2, 2)
    assert factor[0, 1] == 0.0  # lower triangular
    np.testing.assert_allclose(
        factor @ factor.T, exploration**2 * covariance, rtol=1e-6, atol=1e-10
    )


def test_samples_have_the_posterior_spread(posterior):
    factor = bandit.sample_factor(posterior, make_config(exploration=1.5))
    z = np.random.default_rng(2).standard_normal((2, 20_000))
    samples = factor @ z
    expected = 1.5**2 * np.linalg.inv(posterior.precision)
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    # 20k samples: each entry within ~5 standard errors (1.4 / sqrt(n) of the scale)
    assert np.all(np.abs(np.cov(samples) - expected) <= 0.05 * scale)


# -- persistence and config --------------------------------------------------------------


def test_posterior_round_trip(posterior):
    data = json.loads(json.dumps(posterior.to_dict()))
    restored = Posterior.from_dict(data)
    for name in ("precision", "shift", "prior_precision", "prior_shift"):
        np.testing.assert_array_equal(getattr(restored, name), getattr(posterior, name))
        assert getattr(restored, name).dtype == np.float64
    assert restored.outcomes == posterior.outcomes
    config = make_config()
    phi = bandit.features(0.4, True)
    np.testing.assert_array_equal(
        bandit.posterior_mean(bandit.update(restored, phi, 0.7, config)),
        bandit.posterior_mean(bandit.update(posterior, phi, 0.7, config)),
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"half_life_outcomes": 0.0},
        {"noise_sd": -1.0},
        {"exploration": -0.1},
        {"propensity_samples": 4},
        {"temperature": 1.0},
    ],
    ids=["half-life", "noise", "exploration", "samples", "unknown-field"],
)
def test_config_rejects_invalid_values(bad):
    with pytest.raises(ValidationError, match=next(iter(bad))):
        make_config(**bad)


# -- routing from the "model is right" / "model is off" mixture ----------------------------


def known_prior(config: BanditConfig) -> Posterior:
    return bandit.prior(config, known_to_model=True)


def test_without_outcomes_routing_follows_the_model_with_the_mixtures_spread():
    config = make_config(model_doubt=0.2, spike_scale=0.1, exploration=0.5)
    prior = known_prior(config)
    mean, factor = bandit.routing_posterior(prior, config)
    np.testing.assert_allclose(mean, [0.0, 1.0], atol=1e-12)
    slab = np.linalg.inv(prior.precision)
    expected = 0.5**2 * (0.2 * slab + 0.8 * 0.1**2 * slab)
    np.testing.assert_allclose(factor @ factor.T, expected, rtol=1e-6)


@pytest.mark.parametrize("known", [True, False], ids=["doubt-one", "unknown-agent"])
def test_the_plain_posterior_routes_when_there_is_no_model_to_trust(known):
    config = make_config(model_doubt=1.0 if known else 0.1)
    posterior = run(
        bandit.prior(config, known_to_model=known),
        [1, 0, 1, 1],
        config,
        phi=bandit.features(0.7, known_to_model=known),
    )
    mean, factor = bandit.routing_posterior(posterior, config)
    np.testing.assert_array_equal(mean, bandit.posterior_mean(posterior))
    np.testing.assert_array_equal(factor, bandit.sample_factor(posterior, config))


def test_the_mixture_weight_is_the_exact_bayes_factor():
    """Without forgetting, the evidence ratio equals the ratio of the two priors' marginal
    likelihoods of the outcomes, computed directly as multivariate normal densities."""
    config = make_config(half_life_outcomes=1e12, model_doubt=0.3, spike_scale=0.2)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 0.95, 12)
    y = (rng.random(12) < p - 0.15).astype(float)
    posterior = known_prior(config)
    for p_i, y_i in zip(p, y, strict=True):
        posterior = bandit.update(posterior, bandit.features(p_i, True), y_i, config)
    x = np.stack([np.ones_like(p), p], 1)
    prior_cov = np.linalg.inv(posterior.prior_precision)

    def log_density(cov_theta):
        cov = x @ cov_theta @ x.T + config.noise_sd**2 * np.eye(len(y))
        r = y - x @ np.array([0.0, 1.0])
        return -0.5 * (r @ np.linalg.solve(cov, r) + np.linalg.slogdet(cov)[1])

    odds = 0.3 / 0.7 * np.exp(log_density(prior_cov) - log_density(0.2**2 * prior_cov))
    weight = odds / (1 + odds)
    slab_mean = bandit.posterior_mean(posterior)
    spike = Posterior(
        posterior.precision - posterior.prior_precision + posterior.prior_precision / 0.04,
        posterior.shift - posterior.prior_shift + posterior.prior_shift / 0.04,
        posterior.prior_precision / 0.04,
        posterior.prior_shift / 0.04,
    )
    expected = weight * slab_mean + (1 - weight) * bandit.posterior_mean(spike)
    mean, _ = bandit.routing_posterior(posterior, config)
    np.testing.assert_allclose(mean, expected, rtol=1e-9, atol=1e-12)


def test_small_residuals_of_chosen_agents_stay_with_the_model_a_drift_does_not():
    config = BanditConfig()  # the defaults
    phi = bandit.features(0.9, known_to_model=True)
    nudged = run(known_prior(config), [1.0] * 96 + [0.0] * 4, config, phi=phi)  # 0.96 vs 0.9
    plain_shift = float(bandit.posterior_mean(nudged) @ phi) - 0.9
    routed_shift = float(bandit.routing_posterior(nudged, config)[0] @ phi) - 0.9
    assert plain_shift > 0.02 and abs(routed_shift) < plain_shift / 3
    dead = run(known_prior(config), [0.0] * 15, config, phi=phi)
    assert float(bandit.routing_posterior(dead, config)[0] @ phi) < 0.75
    plain_dead = float(bandit.posterior_mean(dead) @ phi)
    assert float(bandit.routing_posterior(dead, config)[0] @ phi) == pytest.approx(
        plain_dead, abs=0.02
    )
