"""The default agent pool of `tinydancer serve` / `demo`: the shipped model's eleven LLMs.

Prices are blended USD per 1,000 tokens (input and output at a 3:1 ratio) from the
providers' public list prices of the models' release period; latencies are typical time
to a complete 300-token answer. They are priors: observed costs and latencies replace
them as outcomes arrive.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_AGENTS"]

_POOL = [
    # name, per 1k tokens USD, latency ms, prior quality, capabilities
    ("gpt-4-1106-preview", 0.0150, 2600, 0.90, ["chat", "code", "reasoning"]),
    ("gpt-3.5-turbo-1106", 0.00125, 900, 0.78, ["chat", "code"]),
    ("claude-v2", 0.0120, 2300, 0.80, ["chat", "reasoning"]),
    ("claude-v1", 0.0120, 2100, 0.82, ["chat", "reasoning"]),
    ("claude-instant-v1", 0.0012, 800, 0.76, ["chat"]),
    ("mistralai/mixtral-8x7b-chat", 0.0006, 700, 0.78, ["chat", "code"]),
    ("zero-one-ai/Yi-34B-Chat", 0.0008, 1100, 0.80, ["chat"]),
    ("meta/llama-2-70b-chat", 0.0009, 1300, 0.72, ["chat"]),
    ("meta/code-llama-instruct-34b-chat", 0.0008, 1100, 0.65, ["chat", "code"]),
    ("mistralai/mistral-7b-chat", 0.0002, 400, 0.62, ["chat"]),
    ("WizardLM/WizardLM-13B-V1.2", 0.0003, 600, 0.62, ["chat"]),
]

DEFAULT_AGENTS: list[dict[str, Any]] = [
    {
        "name": name,
        "type": "llm",
        "capabilities": caps,
        "cost": {"per_1k_tokens_usd": price},
        "expected_latency_ms": latency,
        "expected_quality": quality,
    }
    for name, price, latency, quality, caps in _POOL
]
