"""Agent mode: which agent should serve a request (`AgentRouter`, its jitted kernel,
request and decision types, agents and their cost models, the registry with its
per-agent metrics and bandit posteriors, the decision ledger, circuit breakers and the
quantile sketch behind the latency metrics).

May import: `tinydancer.model`, `tinydancer.errors`, `tinydancer.runtime`, `tinydancer._ids`.
"""
