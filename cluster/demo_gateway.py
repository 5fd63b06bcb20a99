"""The default `tinydancer demo`: a gateway run. Fake OpenAI-compatible upstreams on
127.0.0.1 (one port per agent of the default pool) are the agents' endpoints; clients
send plain-text chat requests to `/v1/chat/completions` with the official `openai`
client, half of them streaming, and report each answer's quality to `/v1/feedback`.

Prompts come from eight topics; each agent has a latent per-topic skill around its
prior quality. Forty per cent in, the busiest agent's quality drifts down; from 60 to
75 % the agent then carrying most traffic answers every request with HTTP 500 (an
outage: the gateway fails over, its circuit opens); two agents drop one stream in
twenty mid-answer (the next agent continues it). The summary counts what clients saw.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from cluster.default_agents import DEFAULT_AGENTS
from cluster.demo_tally import Tally
from cluster.runner import LocalCluster
from tinydancer.gateway.fake_upstream import FakeBehaviour, FakeUpstreams

__all__ = ["GatewayWorld", "drive_gateway"]

TOPICS = {
    "algebra": "solve the equation for x and simplify the polynomial expression",
    "geometry": "compute the area of the triangle and the angle of the circle",
    "python": "write a python function that parses the list and handles the exception",
    "sql": "write a sql query joining the orders table with the customers table",
    "history": "explain the causes of the war and the treaty that ended the empire",
    "biology": "describe how the cell membrane and the protein enzymes work",
    "cooking": "give a recipe for the soup with garlic onions and fresh herbs",
    "travel": "plan a trip itinerary with hotels trains and museums in the city",
}
DROPPY = ("claude-instant-v1", "mistralai/mixtral-8x7b-chat")  # cut 5 % of their streams


class GatewayWorld:
    phase_names = ("learning", "drift", "outage", "recovery")

    def __init__(self, total: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.agents = [a["name"] for a in DEFAULT_AGENTS]
        self.price = {a["name"]: a["cost"]["per_1k_tokens_usd"] for a in DEFAULT_AGENTS}
        names = list(TOPICS)
        self.topic = rng.integers(0, len(names), total)
        words = {t: TOPICS[t].split() for t in names}
        self.prompts = [
            " ".join(rng.choice(words[names[t]], size=12)) + f" (case {i})"
            for i, t in enumerate(self.topic)
        ]
        prior = np.array([a["expected_quality"] for a in DEFAULT_AGENTS])
        self.skill = np.clip(prior[:, None] + rng.normal(0, 0.12, (len(prior), 8)), 0.05, 0.98)
        self.draws = rng.random(total)
        self.total = total
        self.strongest = "gpt-4-1106-preview"
        self.drift_agent: str | None = None
        self.outage_agent: str | None = None
        self.behaviours = {
            a["name"]: FakeBehaviour(
                latency_ms=a["expected_latency_ms"] / 100,  # hours of traffic in a minute
                tokens=24,
                quality=a["expected_quality"],
                drop_rate=0.05 if a["name"] in DROPPY else 0.0,
                drop_after_chunks=6,
            )
            for a in DEFAULT_AGENTS
        }

    def agents_with_endpoints(self, fleet: FakeUpstreams) -> list[dict[str, Any]]:
        return [
            {**spec, "endpoint": fleet.endpoint(spec["name"]).model_dump(mode="json")}
            for spec in DEFAULT_AGENTS
        ]

    def quality(self, i: int, agent: str) -> float:
        """What the client reports: did the answer solve its task (the latent skill)."""
        skill = float(self.skill[self.agents.index(agent), self.topic[i]])
        if agent == self.drift_agent and i >= 0.4 * self.total:
            skill *= 0.3
        return float(self.draws[i] < skill)

    def outcome(self, i: int, agent: str) -> dict[str, Any]:
        """The counterfactual baseline's view: quality and a 24-token answer's cost."""
        tokens = 24 + len(self.prompts[i].split())
        return {"quality": self.quality(i, agent), "cost_usd": self.price[agent] * tokens / 1e3}


def drive_gateway(
    cluster: LocalCluster, world: GatewayWorld, fleet: FakeUpstreams, tally: Tally, concurrency: int
) -> dict[str, int]:
    """Send the workload through the gateway with the `openai` client; returns the counts
    of failovers the answers reported."""
    import openai
    import requests as http

    client: Any = openai.OpenAI(
        base_url=f"{cluster.url}/v1", api_key="demo", max_retries=0, timeout=120
    )
    counts = {"failovers": 0, "mid_stream_failovers": 0, "streamed": 0, "feedback_refused": 0}
    lock = threading.Lock()
    local = threading.local()
    total = world.total

    def one(i: int) -> None:
        stream = i % 2 == 1
        messages = [{"role": "user", "content": world.prompts[i]}]
        t0 = time.perf_counter()
        try:
            if stream:
                chunks = list(
                    client.chat.completions.create(
                        model="tinydancer/balanced",
                        messages=messages,
                        stream=True,
                        stream_options={"include_usage": True},
                    )
                )
                summary = chunks[-1].model_extra["tinydancer"]
                usage = next(c.usage for c in reversed(chunks) if c.usage is not None)
            else:
                answer = client.chat.completions.create(
                    model="tinydancer/balanced",
                    messages=messages,
                )
                summary, usage = answer.model_extra["tinydancer"], answer.usage
        except Exception as exc:  # a client-visible error: what the gateway must prevent
            with tally.lock:
                tally.errors[type(exc).__name__] += 1
            return
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        agent = summary["agent"]
        quality = world.quality(i, agent)
        if not hasattr(local, "session"):
            local.session = http.Session()
        report = {"request_id": summary["request_id"], "quality": quality}
        reply = local.session.post(f"{cluster.url}/v1/feedback", json=report, timeout=30)
        if reply.status_code != 200 and _report_later(reply):
            time.sleep(1.0)  # the answer's record is still on its way: report later, once
            reply = local.session.post(f"{cluster.url}/v1/feedback", json=report, timeout=30)
        if reply.status_code != 200:  # counted apart: the answer itself reached the client
            with lock:
                counts["feedback_refused"] += 1
        tokens = usage.prompt_tokens + usage.completion_tokens if usage else 0
        with lock:
            counts["failovers"] += summary["failover_count"]
            counts["mid_stream_failovers"] += summary["mid_stream_failovers"]
            counts["streamed"] += stream
        cost = world.price[agent] * tokens / 1e3  # from the answer's usage
        tally.add(i, total, agent, elapsed_ms, cost, quality)

    warm = min(200, int(0.4 * total))  # every request is sent once, whatever the total
    outage_from = max(warm, int(0.6 * total))
    outage_to = max(outage_from, int(0.75 * total))
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(warm)))
        world.drift_agent = tally.busiest(since=0, besides=None)
        list(pool.map(one, range(warm, outage_from)))
        world.outage_agent = tally.busiest(since=int(0.4 * total), besides=world.drift_agent)
        if world.outage_agent is not None:
            fleet.configure(world.outage_agent, error_rate=1.0)
        list(pool.map(one, range(outage_from, outage_to)))
        if world.outage_agent is not None:
            fleet.configure(world.outage_agent, error_rate=0.0)
        list(pool.map(one, range(outage_to, total)))
    return counts


def _report_later(reply: Any) -> bool:
    """A refusal that says the answer is not recorded yet (what a client may retry)."""
    try:
        reason = reply.json().get("reason")
    except ValueError:
        return False
    return reason in {"in_progress", "unknown_request"}
