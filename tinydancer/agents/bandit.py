"""Online learning: a discounted linear Thompson-sampling posterior per agent.

Each agent's quality on a request is modelled as

    quality ≈ theta_0 + theta_1 * p_model(request, agent)  (+ noise, sd `noise_sd`)

where p_model is the offline FastGRNN's predicted quality for that (request, agent)
(0 for an agent the model has no head for). The context therefore reaches the bandit
through the learned model, and the bandit learns a per-agent correction (offset and
slope) from outcomes. The prior trusts the model (theta = [0, 1]) for agents it knows
and starts unknown agents at their declared `expected_quality` (else 0.5) with a wide
spread, so they get explored.

Why Thompson sampling rather than LinUCB: routing replicas act on snapshots and
feedback arrives late; sampling spreads traffic between close candidates instead of
sending every replica to the same upper bound until the next update, and the selection
probability (the propensity logged for off-policy evaluation) is estimated by
resampling. Why two features: posteriors stay well determined after a handful of
outcomes, the state is 6 numbers per agent, and feedback needs only the logged p_model.

Exploration: a decision samples theta from the posterior with its spread scaled by
`exploration` (0.2). The agents' predicted qualities are often within a few hundredths of
each other, so a draw at the full posterior spread (or half of it, the earlier default)
mostly re-ranks near-ties against the model's cross-validated ranking; in `replay` over
the RouterBench test splits (20 orders each) 0.5 made one pass worse than the model
alone on ARC, while 0.2 is better than the model alone on both and still drops a
drifting agent within a few dozen requests. Every agent keeps a non-zero chance where the
posterior is uncertain, so propensities stay estimable.

Trusting the model: for an agent the model knows, routing does not use the posterior
above directly but a two-part mixture (`routing_posterior`): with prior probability
`model_doubt` (0.05) the agent departs from the model as that posterior allows (the
"slab"), otherwise it follows the model within a spread `spike_scale` (0.05) times as
wide (the "spike"). Both parts see the same (discounted) evidence; their weights come
from its marginal likelihood under each, so a correction is applied only once the
outcomes are unlikely under "the model is right". The outcomes a router sees are those
of the agents it chose, where their predictions were highest, so small systematic
residuals are the rule even for a calibrated model: a plain Gaussian correction turned
them into re-routing that cost quality over one pass of `replay` on every RouterBench
order tried, while a drifting agent's zeros are decisive within a dozen outcomes.

Forgetting: before each update the evidence is discounted towards the prior by
gamma = 0.5 ** (1 / half_life_outcomes), so an agent whose quality drifts is re-learnt
from its last few hundred outcomes. Pure functions on a frozen state (optax style).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tinydancer.agents.sketch import decay_for_half_life

__all__ = [
    "BanditConfig",
    "Posterior",
    "age",
    "features",
    "posterior_mean",
    "prior",
    "routing_posterior",
    "sample_factor",
    "update",
]


class BanditConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    half_life_outcomes: float = Field(
        100.0, gt=0, description="evidence halves after this many newer outcomes"
    )
    noise_sd: float = Field(0.45, gt=0, description="sd of one outcome's quality around its mean")
    prior_sd_offset: float = Field(
        0.05, gt=0, description="prior sd of theta_0 for agents the model knows"
    )
    prior_sd_slope: float = Field(
        0.1, gt=0, description="prior sd of theta_1 for agents the model knows"
    )
    unknown_prior_sd: float = Field(
        0.25, gt=0, description="prior sd of the mean quality of unknown agents"
    )
    idle_half_life_outcomes: float | None = Field(
        1000.0,
        gt=0,
        description="an agent's evidence halves after this many outcomes of other agents "
        "(None: only its own outcomes discount it)",
    )
    exploration: float = Field(
        0.2,
        ge=0,
        description="scales the posterior spread used for sampling (measured by replay: "
        "0.5 cost quality over one pass where the offline model is right, 0.2 did not)",
    )
    model_doubt: float = Field(
        0.05,
        gt=0,
        le=1,
        description="prior probability that an agent the model knows departs from it "
        "(1: route from the plain posterior)",
    )
    spike_scale: float = Field(
        0.05, gt=0, le=1, description="spread of 'the model is right' relative to the prior's"
    )
    propensity_samples: int = Field(
        64, ge=8, le=4096, description="samples used to estimate propensities"
    )


@dataclass(frozen=True, slots=True, eq=False)
class Posterior:
    """Gaussian posterior over theta in information form: precision (2, 2), shift = precision @ mean."""

    precision: np.ndarray
    shift: np.ndarray
    prior_precision: np.ndarray
    prior_shift: np.ndarray
    outcomes: int = 0
    updated_at: int = 0  # the registry's outcome count at this agent's last outcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision.tolist(),
            "shift": self.shift.tolist(),
            "prior_precision": self.prior_precision.tolist(),
            "prior_shift": self.prior_shift.tolist(),
            "outcomes": self.outcomes,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Posterior:
        return cls(
            np.asarray(data["precision"], np.float64),
            np.asarray(data["shift"], np.float64),
            np.asarray(data["prior_precision"], np.float64),
            np.asarray(data["prior_shift"], np.float64),
            outcomes=int(data["outcomes"]),
            updated_at=int(data.get("updated_at", 0)),
        )


def prior(
    config: BanditConfig, *, known_to_model: bool, expected_quality: float | None = None
) -> Posterior:
    if known_to_model:
        mean = np.array([0.0, 1.0])
        sd = np.array([config.prior_sd_offset, config.prior_sd_slope])
    else:
        mean = np.array([0.5 if expected_quality is None else expected_quality, 0.0])
        sd = np.array([config.unknown_prior_sd, 1e-3])  # no model prediction: the slope is moot
    precision = np.diag(1.0 / sd**2)
    shift = precision @ mean
    return Posterior(precision, shift, precision.copy(), shift.copy())


def features(p_model: float, known_to_model: bool) -> np.ndarray:
    return np.array([1.0, p_model if known_to_model else 0.0])


def update(
    posterior: Posterior, phi: np.ndarray, quality: float, config: BanditConfig
) -> Posterior:
    """Discount old evidence towards the prior, then add one outcome."""
    gamma = decay_for_half_life(config.half_life_outcomes)
    noise_precision = 1.0 / config.noise_sd**2
    precision = gamma * posterior.precision + (1 - gamma) * posterior.prior_precision
    shift = gamma * posterior.shift + (1 - gamma) * posterior.prior_shift
    precision = precision + noise_precision * np.outer(phi, phi)
    shift = shift + noise_precision * quality * phi
    return replace(posterior, precision=precision, shift=shift, outcomes=posterior.outcomes + 1)


def age(posterior: Posterior, idle_outcomes: int, config: BanditConfig) -> Posterior:
    """Discount the evidence towards the prior for `idle_outcomes` outcomes of other agents."""
    if config.idle_half_life_outcomes is None or idle_outcomes <= 0:
        return posterior
    g = 0.5 ** (idle_outcomes / config.idle_half_life_outcomes)
    return replace(
        posterior,
        precision=g * posterior.precision + (1 - g) * posterior.prior_precision,
        shift=g * posterior.shift + (1 - g) * posterior.prior_shift,
    )


def posterior_mean(posterior: Posterior) -> np.ndarray:
    return np.linalg.solve(posterior.precision, posterior.shift)


def sample_factor(posterior: Posterior, config: BanditConfig) -> np.ndarray:
    """L with L @ L.T = exploration^2 * covariance: theta = mean + L @ z, z ~ N(0, I)."""
    covariance = np.linalg.inv(posterior.precision)
    return config.exploration * np.linalg.cholesky(covariance + 1e-12 * np.eye(2))


def _log_evidence(
    prior_precision: np.ndarray,
    prior_mean: np.ndarray,
    data_precision: np.ndarray,
    data_shift: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log marginal likelihood (up to terms shared by every prior), posterior mean and covariance."""
    precision = prior_precision + data_precision
    shift = prior_precision @ prior_mean + data_shift
    covariance = np.linalg.inv(precision)
    mean = covariance @ shift
    _, logdet_prior = np.linalg.slogdet(prior_precision)
    _, logdet_post = np.linalg.slogdet(precision)
    evidence = 0.5 * (
        shift @ mean - prior_mean @ prior_precision @ prior_mean + logdet_prior - logdet_post
    )
    return float(evidence), mean, covariance


def routing_posterior(posterior: Posterior, config: BanditConfig) -> tuple[np.ndarray, np.ndarray]:
    """(mean, L) that routing samples from: theta = mean + L @ z, z ~ N(0, I).

    For an agent the model knows (a prior slope of 1) with `model_doubt` < 1: the
    moment-matched mixture of the plain posterior (weight from the evidence) and the
    "model is right" posterior; otherwise the plain posterior.
    """
    prior_mean = np.linalg.solve(posterior.prior_precision, posterior.prior_shift)
    if config.model_doubt >= 1.0 or prior_mean[1] < 0.5:
        return posterior_mean(posterior), sample_factor(posterior, config)
    data_precision = posterior.precision - posterior.prior_precision
    data_shift = posterior.shift - posterior.prior_shift
    slab, slab_mean, slab_cov = _log_evidence(
        posterior.prior_precision, prior_mean, data_precision, data_shift
    )
    spike, spike_mean, spike_cov = _log_evidence(
        posterior.prior_precision / config.spike_scale**2, prior_mean, data_precision, data_shift
    )
    doubt = config.model_doubt
    log_odds = np.log(doubt / (1 - doubt)) + slab - spike
    weight = float(1.0 / (1.0 + np.exp(-np.clip(log_odds, -50.0, 50.0))))
    mean = weight * slab_mean + (1 - weight) * spike_mean
    covariance = weight * (slab_cov + np.outer(slab_mean - mean, slab_mean - mean)) + (
        1 - weight
    ) * (spike_cov + np.outer(spike_mean - mean, spike_mean - mean))
    factor = config.exploration * np.linalg.cholesky(covariance + 1e-12 * np.eye(2))
    return mean, factor
