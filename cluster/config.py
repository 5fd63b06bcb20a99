"""Typed arguments of the Ray application (what `build_app(args)` and the Serve YAML take)."""

from __future__ import annotations

import os
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray.serve.config import AutoscalingConfig

from tinydancer.agents.agent import Agent
from tinydancer.agents.bandit import BanditConfig
from tinydancer.agents.breaker import BreakerConfig
from tinydancer.agents.shards import MAX_SHARDS
from tinydancer.gateway.config import GatewayConfig
from tinydancer.history.maintenance import CHECKPOINT_SIZE, DEFAULT_CHECKPOINT_SIZE

__all__ = ["AppArgs", "AutoscalingArgs", "admin_token_from"]


class AutoscalingArgs(AutoscalingConfig):
    """Serve's own `AutoscalingConfig` (every field, its validation), with defaults measured
    on a 2-core machine where a new replica takes 18-30 s to start: decide to scale up
    after 5 s of load (so the replica serves within ~30 s of a burst), back down 45 s after
    it (within ~60 s). Serve's defaults (30 s up, 600 s down) held the extra replica for
    ten minutes. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float | None = Field(
        8.0, gt=0, description="per replica, before scaling up (16 never scaled a load of 16)"
    )
    metrics_interval_s: float = Field(2.0, gt=0)
    look_back_period_s: float = Field(10.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(45.0, ge=0)

    def to_serve(self) -> dict[str, Any]:
        return AutoscalingConfig.model_validate(self.model_dump()).model_dump()


class AppArgs(BaseModel):
    """Everything the Tiny Dancer Serve application needs; embedded defaults run on one machine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field("tinydancer", description="Ray namespace of the named actors")
    agent_model_path: str | None = Field(None, description="agent-mode weights (None = shipped)")
    candidate_model_path: str | None = Field(
        None, description="candidate-mode weights (None = shipped)"
    )
    history_path: str = Field(
        "tinydancer-data/history.duckdb", description="the DuckDB history file"
    )
    export_dir: str | None = Field(
        None, description="Parquet exports for analysts (None = next to the file)"
    )
    export_interval_s: float = Field(
        60.0, gt=0, description="how often the history exports new rows"
    )
    history_push_interval_s: float = Field(
        0.2, gt=0, description="replicas send buffered records this often"
    )
    history_max_buffer_rows: int = Field(50_000, ge=1)
    history_max_buffer_age_s: float = Field(
        0.8,
        gt=0,
        description="a decision is written within this long of its answer, plus the history "
        "actor's 0.1 s tick: what a killed history actor can lose (RELIABILITY.md)",
    )
    history_retention_days: float | None = Field(
        None,
        gt=0,
        description="fold raw rows older than this into daily aggregates (hourly); None = keep",
    )
    history_checkpoint_threshold: str = Field(
        DEFAULT_CHECKPOINT_SIZE,
        pattern=CHECKPOINT_SIZE,
        description="DuckDB checkpoints the history's write-ahead log into the file at this "
        "size, such as '256MB'; a restarted history actor replays up to this much",
    )
    snapshot_interval_s: float = Field(
        0.25, gt=0, le=1.0, description="replicas refresh registry/breaker state"
    )
    num_replicas: int = Field(1, ge=1, description="ignored when autoscaling is set")
    autoscaling: AutoscalingArgs | None = Field(
        None, description="Serve autoscaling of router replicas"
    )
    replica_num_cpus: float = Field(0.5, gt=0, description="CPU reserved per router replica")
    max_replicas_per_node: int | None = Field(None, ge=1, description="spread replicas over nodes")
    actor_num_cpus: float = Field(0.1, ge=0, description="CPU reserved per state actor")
    max_ongoing_requests: int = Field(
        64, ge=1, description="per replica (Serve's default of 5 collapses at 32 clients)"
    )
    batch_max_size: int = Field(
        32, ge=1, description="most requests routed together (in one jitted call above 4)"
    )
    batch_wait_timeout_s: float = Field(
        0.0002, ge=0, description="how long a batch waits for company"
    )
    pin_replicas: bool = Field(
        True, description="pin each replica process to core rank % cpu_count"
    )
    access_log: bool = Field(
        False,
        description="Serve's access-log line per request in each replica's log (off: the "
        "history and the Prometheus metrics already count every request)",
    )
    admin_token: str | None = Field(
        None, description="bearer token for admin endpoints (or TINYDANCER_ADMIN_TOKEN)"
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="larger request bodies get 413"
    )
    fallback_agent: str | None = Field(
        None, description="served when no eligible agent is available"
    )
    seed: int = Field(0, description="seed of Thompson sampling (per replica: seed + rank)")
    breaker: BreakerConfig = Field(
        default_factory=BreakerConfig, description="the circuit breaker of every agent"
    )
    bandit: BanditConfig = Field(
        default_factory=BanditConfig,
        description="online learning of a new registry (a restored one keeps its own)",
    )
    gateway: GatewayConfig = Field(
        default_factory=GatewayConfig,
        description="/v1/chat/completions: profiles, failover bounds, the deadline, limits",
    )
    agents: list[dict[str, Any]] | None = Field(
        None,
        description="a fresh registry's agents, as POST /v1/agents takes them (endpoint and "
        "fallbacks included); None = the default pool",
    )
    register_default_agents: bool = Field(
        True, description="a fresh registry starts with the default pool"
    )
    feedback_wait_s: float = Field(
        1.0, ge=0, description="how long feedback waits for its decision to arrive"
    )
    max_batch_texts: int = Field(256, ge=1, description="texts in one /v1/route/batch call")
    state_shards: int = Field(
        1,
        description="registry, breaker and ledger shards: N registry actors, each owning the "
        "agents crc32(name) % N names and the ledger of the request ids crc32(id) % N names, "
        "and N breaker actors owning the same agents; 1 = one actor of each (the default, "
        "under the unsharded names)",
    )
    encoder_cache_size: int = Field(
        10_000, ge=0, description="message embeddings kept per replica (LRU by text hash)"
    )

    @field_validator("agents")
    @classmethod
    def _valid_agents(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for spec in value or []:
            Agent.model_validate(spec)  # a bad entry fails at build time, naming its field
        return value

    @field_validator("state_shards")
    @classmethod
    def _shards_in_range(cls, value: int) -> int:
        if not 1 <= value <= MAX_SHARDS:
            raise ValueError(
                f"state_shards={value} is out of range: an integer in [1, {MAX_SHARDS}] "
                "(1 = one registry, breaker and ledger actor)"
            )
        return value

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("admin_token must be at least 16 characters")
        return value


def admin_token_from(args: AppArgs) -> tuple[str, bool]:
    """(token, generated): from the args, else TINYDANCER_ADMIN_TOKEN, else a new random one."""
    token = args.admin_token or os.environ.get("TINYDANCER_ADMIN_TOKEN")
    if token:
        return token, False
    return secrets.token_urlsafe(24), True
