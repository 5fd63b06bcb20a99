"""The agent registry: agents, their observed metrics and their bandit posteriors.

A pure object (no I/O, no threads): the serving layer's registry actor owns one and
replicas route from its `snapshot()`. Every change bumps `version`.

    registry = AgentRegistry()
    registry.register(Agent(name="gpt-4o-mini", capabilities=["chat"], cost=CostModel(per_1k_tokens_usd=0.0006)))
    registry.record_outcome("req-1", "gpt-4o-mini", success=True, latency_ms=820, quality=0.9, cost_usd=0.0004)
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tinydancer.agents import bandit
from tinydancer.agents.agent import Agent, CostModel
from tinydancer.agents.bandit import BanditConfig, Posterior
from tinydancer.agents.bulk import OutcomeBlock, apply_block
from tinydancer.agents.metrics import AgentMetrics
from tinydancer.agents.sketch import decay_for_half_life
from tinydancer.errors import DuplicateAgentError, InvalidRequestError, UnknownAgentError

if TYPE_CHECKING:
    from tinydancer.model.weights import RouterModel

__all__ = ["AgentMetrics", "AgentRegistry"]


class AgentRegistry:
    """Agents, metrics and posteriors. `known_to_model` names the agents the offline model scores."""

    def __init__(
        self,
        *,
        bandit_config: BanditConfig | None = None,
        recent_half_life_outcomes: float = 100.0,
        known_to_model: Iterable[str] = (),
    ) -> None:
        self.bandit_config = bandit_config or BanditConfig()
        self.recent_decay = decay_for_half_life(recent_half_life_outcomes)
        self.known_to_model = frozenset(known_to_model)
        # The serving model's embedding dimension (set by the router that uses this registry):
        # an agent whose specialization has another length is refused at registration, so that
        # one bad registration cannot make every route fail.
        self.embedding_dim: int | None = None
        self._agents: dict[str, Agent] = {}
        self._metrics: dict[str, AgentMetrics] = {}
        self._posteriors: dict[str, Posterior] = {}
        self.version = 0
        self.bandit_updates = 0

    @classmethod
    def for_model(
        cls,
        model: RouterModel,
        *,
        agents: Sequence[str] | None = None,
        capabilities: Iterable[str] = (),
        latency_ms: Sequence[float] | None = None,
        bandit_config: BanditConfig | None = None,
    ) -> AgentRegistry:
        """A registry of the agents a trained model scores (or the given subset of them).

        Each is priced per request at the mean cost its training data recorded
        (`model.info["agent_mean_cost_usd"]`, 0 where absent); `latency_ms` gives the
        declared latency priors, one per agent.
        """
        known = list(model.feature_schema["agents"])
        names = known if agents is None else list(agents)
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise InvalidRequestError("agents", unknown, f"agents the model scores: {known}")
        if latency_ms is not None and len(latency_ms) != len(names):
            raise InvalidRequestError(
                "latency_ms", len(latency_ms), f"one latency per agent ({len(names)})"
            )
        costs = model.info.get("agent_mean_cost_usd", {})
        registry = cls(known_to_model=known, bandit_config=bandit_config)
        for i, name in enumerate(names):
            registry.register(
                Agent(
                    name=name,
                    capabilities=list(capabilities),
                    cost=CostModel(per_request_usd=float(costs.get(name, 0.0))),
                    expected_latency_ms=None if latency_ms is None else float(latency_ms[i]),
                )
            )
        return registry

    # -- agents ---------------------------------------------------------------------------
    def _require(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgentError(name, list(self._agents)) from None

    def _prior(self, agent: Agent) -> Posterior:
        return bandit.prior(
            self.bandit_config,
            known_to_model=agent.name in self.known_to_model,
            expected_quality=agent.expected_quality,
        )

    def register(self, agent: Agent) -> Agent:
        if agent.name in self._agents:
            raise DuplicateAgentError(agent.name)
        self._check_specialization(agent)
        self._agents[agent.name] = agent
        self._metrics[agent.name] = AgentMetrics(self.recent_decay)
        self._posteriors[agent.name] = self._prior(agent)
        self.version += 1
        return agent

    def update(self, name: str, /, **changes: Any) -> Agent:
        """Change fields of an agent (validated like a new one); metrics and posterior stay."""
        current = self._require(name)
        if "name" in changes and changes["name"] != name:
            raise InvalidRequestError(
                "name", changes["name"], f"{name!r} (agents cannot be renamed)"
            )
        try:
            updated = Agent.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRequestError(
                ".".join(str(p) for p in first["loc"]), first.get("input"), first["msg"]
            ) from None
        self._check_specialization(updated)
        self._agents[name] = updated
        self.version += 1
        return updated

    def _check_specialization(self, agent: Agent) -> None:
        dim = self.embedding_dim
        if (
            dim is not None
            and agent.specialization is not None
            and len(agent.specialization) != dim
        ):
            raise InvalidRequestError(
                "specialization",
                f"{len(agent.specialization)} values",
                f"{dim} values (the model's embedding dimension)",
            )

    def remove(self, name: str) -> Agent:
        agent = self._require(name)
        del self._agents[name], self._metrics[name], self._posteriors[name]
        self.version += 1
        return agent

    def set_active(self, name: str, active: bool) -> Agent:
        return self.update(name, active=active)

    def get(self, name: str) -> Agent:
        return self._require(name)

    def list(self, *, active_only: bool = False) -> builtins.list[Agent]:
        return [a for a in self._agents.values() if a.active or not active_only]

    def find_by_capability(
        self, capability: str, *, active_only: bool = True
    ) -> builtins.list[Agent]:
        wanted = capability.strip().lower()
        return [a for a in self.list(active_only=active_only) if wanted in a.capabilities]

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __len__(self) -> int:
        return len(self._agents)

    # -- outcomes -------------------------------------------------------------------------
    def record_outcome(
        self,
        request_id: str,
        agent: str,
        success: bool,
        latency_ms: float | None = None,
        quality: float | None = None,
        cost_usd: float | None = None,
        *,
        model_quality: float | None = None,
        learn: bool = True,
    ) -> None:
        """Add one outcome to the agent's metrics and (with `learn`) its posterior.

        quality defaults to 1.0 / 0.0 from `success`; `model_quality` is the offline
        model's prediction logged with the decision (the bandit's context).
        """
        self._check(request_id, agent, latency_ms, quality, cost_usd, model_quality)
        if not isinstance(success, bool):
            raise InvalidRequestError("success", success, "true or false", f"request {request_id}")
        self._metrics[agent].add(success, latency_ms, quality, cost_usd)
        if learn:
            self._learn(agent, float(success) if quality is None else float(quality), model_quality)
        self.version += 1

    def record_quality(
        self, request_id: str, agent: str, quality: float, *, model_quality: float | None = None
    ) -> None:
        """A quality reported after the answer, whose success was recorded already: the
        agent's quality metrics and posterior learn it; the request is not counted again."""
        if quality is None:
            raise InvalidRequestError(
                "quality", None, "a number in [0, 1]", f"request {request_id}"
            )
        self._check(request_id, agent, None, quality, None, model_quality)
        self._metrics[agent].add_quality(quality)
        self._learn(agent, float(quality), model_quality)
        self.version += 1

    def record_many(self, block: OutcomeBlock) -> int:
        """Apply a block of outcomes and quality reports (`agents.bulk`) vectorised: the
        same metrics and posteriors as its rows one by one in order. The block is checked
        whole first; a bad row refuses all of it. Returns the rows applied."""
        return apply_block(self, block)

    def _check(
        self,
        request_id: str,
        agent: str,
        latency_ms: float | None,
        quality: float | None,
        cost_usd: float | None,
        model_quality: float | None,
    ) -> None:
        self._require(agent)
        check_outcome_values(request_id, latency_ms, quality, cost_usd, model_quality)

    def _learn(self, agent: str, observed: float, model_quality: float | None) -> None:
        known = agent in self.known_to_model and model_quality is not None
        phi = bandit.features(0.0 if model_quality is None else model_quality, known)
        updated = bandit.update(self.posterior(agent), phi, observed, self.bandit_config)
        self.bandit_updates += 1
        self._posteriors[agent] = replace(updated, updated_at=self.bandit_updates)

    def stats(self, name: str | None = None) -> dict[str, Any]:
        if name is not None:
            agent = self._require(name)
            return {
                "agent": agent.public(),
                "metrics": self._metrics[name].summary(),
                "posterior_mean": bandit.posterior_mean(self.posterior(name)).tolist(),
            }
        return {"version": self.version, "agents": {n: self.stats(n) for n in self._agents}}

    def metrics(self, name: str) -> AgentMetrics:
        self._require(name)
        return self._metrics[name]

    def posterior(self, name: str) -> Posterior:
        """The agent's posterior now: its evidence aged by the outcomes of others since its last."""
        self._require(name)
        stored = self._posteriors[name]
        return bandit.age(stored, self.bandit_updates - stored.updated_at, self.bandit_config)

    # -- persistence ----------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready data (for replicas and for persistence)."""
        return {
            "bandit_updates": self.bandit_updates,
            "version": self.version,
            "bandit_config": self.bandit_config.model_dump(),
            "recent_decay": self.recent_decay,
            "known_to_model": sorted(self.known_to_model),
            "agents": [
                {
                    "agent": a.model_dump(mode="json"),
                    "metrics": self._metrics[n].to_dict(),
                    "posterior": self._posteriors[n].to_dict(),
                }
                for n, a in self._agents.items()
            ],
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> AgentRegistry:
        registry = cls(
            bandit_config=BanditConfig(**snapshot["bandit_config"]),
            known_to_model=snapshot["known_to_model"],
        )
        registry.recent_decay = float(snapshot["recent_decay"])
        registry.version = int(snapshot["version"])
        registry.bandit_updates = int(snapshot.get("bandit_updates", 0))
        for entry in snapshot["agents"]:
            agent = Agent.model_validate(entry["agent"])
            registry._agents[agent.name] = agent
            registry._metrics[agent.name] = AgentMetrics.from_dict(entry["metrics"])
            posterior = Posterior.from_dict(entry["posterior"])
            if "updated_at" not in entry["posterior"]:  # a snapshot from before idle ageing
                posterior = replace(posterior, updated_at=registry.bandit_updates)
            registry._posteriors[agent.name] = posterior
        return registry

    def set_known_to_model(self, names: Iterable[str]) -> None:
        """A new model was loaded: agents it knows get the model-trusting prior if still fresh."""
        self.known_to_model = frozenset(names)
        for name, agent in self._agents.items():
            if self._posteriors[name].outcomes == 0:
                self._posteriors[name] = self._prior(agent)
        self.version += 1


def check_outcome_values(
    request_id: str,
    latency_ms: float | None,
    quality: float | None,
    cost_usd: float | None,
    model_quality: float | None,
) -> None:
    """An outcome's numbers, checked as `record_outcome` checks them (without the agent)."""
    for field_name, value, low, high in (
        ("latency_ms", latency_ms, 0.0, math.inf),
        ("quality", quality, 0.0, 1.0),
        ("cost_usd", cost_usd, 0.0, math.inf),
        ("model_quality", model_quality, 0.0, 1.0),
    ):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise InvalidRequestError(
                field_name,
                value,
                f"a number in [{low}, {high}] or null",
                f"request {request_id}",
            )
