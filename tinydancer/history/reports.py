"""The SQL of the history reports (fixed strings: only bound parameters reach them), their
names and their columns. `HistoryReader` (analytics.py) runs them."""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["BUCKETS", "REPORTS", "REPORT_COLUMNS", "SQL"]

_WINDOW = (
    "ts >= coalesce(CAST($since AS TIMESTAMP), '-infinity'::TIMESTAMP) "
    "AND ts < coalesce(CAST($until AS TIMESTAMP), 'infinity'::TIMESTAMP)"
)
# First outcome per request (the outcomes_latest view, spelled out so that reports also
# work on files and exports without the view).
# Candidate-mode decisions choose documents, not agents: the agent reports leave them (and
# the outcomes reported for them) out.
_FIRST_OUTCOMES = (
    "SELECT * FROM outcomes o WHERE NOT duplicate AND NOT EXISTS "
    "(SELECT 1 FROM decisions c WHERE c.mode = 'candidate' AND c.request_id = o.request_id)"
)
_AGENT_MODE = "mode IS DISTINCT FROM 'candidate'"

# Reports aggregate decisions and outcomes separately and merge the per-agent (or
# per-bucket) rows: joining a million decisions to their outcomes on the request id
# costs several times the 100 ms budget, the merge costs nothing. Decisions are windowed
# on their own time, outcomes on theirs; outcome metrics belong to the agent that served.
_AGENTS = f"""
WITH d AS (
    SELECT chosen AS agent, count(*) AS decisions FROM decisions
    WHERE {_WINDOW} AND {_AGENT_MODE} GROUP BY chosen),
o AS (
    SELECT agent, count(*) AS outcomes, avg(success::DOUBLE) AS success_rate, avg(quality) AS mean_quality,
           quantile_cont(latency_ms, [0.5, 0.95, 0.99]) AS q,
           sum(cost_usd) AS total_cost_usd, avg(cost_usd) AS mean_cost_usd
    FROM ({_FIRST_OUTCOMES}) WHERE {_WINDOW} GROUP BY agent)
SELECT coalesce(d.agent, o.agent) AS agent, coalesce(d.decisions, 0) AS decisions,
       coalesce(d.decisions, 0) / sum(coalesce(d.decisions, 0)) OVER () AS traffic_share,
       coalesce(o.outcomes, 0) AS outcomes, o.success_rate, o.mean_quality, o.q[1] AS latency_p50_ms,
       o.q[2] AS latency_p95_ms, o.q[3] AS latency_p99_ms, o.total_cost_usd, o.mean_cost_usd
FROM d FULL JOIN o ON d.agent IS NOT DISTINCT FROM o.agent
ORDER BY decisions DESC, agent"""

# The strongest agent has the highest mean observed quality; always sending every request
# there would have cost its mean observed cost per request. (A naive counterfactual: it
# assumes that agent's quality and cost on the traffic it did not get.)
_SAVINGS = f"""
WITH j AS (SELECT agent, quality, cost_usd FROM ({_FIRST_OUTCOMES}) WHERE {_WINDOW}),
per_agent AS (
    SELECT agent, avg(quality) AS mean_quality, avg(cost_usd) AS mean_cost_usd
    FROM j GROUP BY agent),
strongest AS (
    SELECT * FROM per_agent WHERE mean_quality IS NOT NULL
    ORDER BY mean_quality DESC, agent LIMIT 1),
actual AS (
    SELECT count(*) AS n, sum(cost_usd) AS total, avg(cost_usd) AS mean, avg(quality) AS quality
    FROM j)
SELECT a.n AS decisions_with_outcome, a.total AS actual_total_cost_usd,
       a.mean AS actual_mean_cost_usd, a.quality AS actual_mean_quality,
       s.agent AS strongest_agent, s.mean_cost_usd AS strongest_mean_cost_usd,
       s.mean_quality AS strongest_mean_quality,
       a.n * s.mean_cost_usd AS always_strongest_total_cost_usd,
       a.n * s.mean_cost_usd - a.total AS savings_usd,
       1 - a.total / nullif(a.n * s.mean_cost_usd, 0) AS savings_share
FROM actual a LEFT JOIN strongest s ON true"""

_TIMESERIES = f"""
WITH d AS (
    SELECT date_trunc('{{part}}', ts) AS bucket, coalesce(chosen, '(none)') AS chosen
    FROM decisions WHERE {_WINDOW} AND {_AGENT_MODE}),
per_agent AS (
    SELECT bucket, chosen, count(*) AS n, count(*) / sum(count(*)) OVER (PARTITION BY bucket) AS share
    FROM d GROUP BY bucket, chosen),
shares AS (
    SELECT bucket, sum(n) AS decisions, map(list(chosen ORDER BY chosen), list(share ORDER BY chosen)) AS agent_share
    FROM per_agent GROUP BY bucket),
o AS (
    SELECT date_trunc('{{part}}', ts) AS bucket, count(*) AS outcomes, avg(success::DOUBLE) AS success_rate,
           avg(quality) AS mean_quality, sum(cost_usd) AS cost_usd
    FROM ({_FIRST_OUTCOMES}) WHERE {_WINDOW} GROUP BY 1)
SELECT s.bucket, s.decisions::BIGINT AS decisions, coalesce(o.outcomes, 0) AS outcomes, o.success_rate,
       o.mean_quality, o.cost_usd, s.agent_share
FROM shares s LEFT JOIN o USING (bucket) ORDER BY s.bucket"""

_BREAKERS = f"""
SELECT agent, to_state, count(*) AS transitions, min(ts) AS first_ts, max(ts) AS last_ts
FROM breaker_transitions WHERE {_WINDOW}
GROUP BY agent, to_state ORDER BY agent, to_state"""

# A failover: a failed attempt after which the request went on to another attempt.
_GATEWAY = f"""
WITH a AS (
    SELECT *, max(attempt) OVER (PARTITION BY request_id) AS last_attempt
    FROM attempts WHERE {_WINDOW}),
k AS (
    SELECT agent, map(list(failure_kind ORDER BY failure_kind), list(n ORDER BY failure_kind)) AS kinds
    FROM (SELECT agent, failure_kind, count(*) AS n FROM a WHERE failure_kind IS NOT NULL GROUP BY ALL)
    GROUP BY agent),
s AS (
    SELECT agent, count(*) AS attempts, count(*) FILTER (WHERE success) AS successes,
           count(*) FILTER (WHERE NOT success) AS failures,
           count(*) FILTER (WHERE NOT success AND attempt < last_attempt) AS failovers,
           count(*) FILTER (WHERE mid_stream) AS mid_stream_failures,
           count(*) FILTER (WHERE continued AND success) AS continuations,
           quantile_cont(ttft_ms, [0.5, 0.95]) AS t, quantile_cont(latency_ms, 0.5) AS latency_p50_ms,
           sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd
    FROM a GROUP BY agent)
SELECT s.agent, s.attempts, s.successes, s.failures, s.failovers, s.mid_stream_failures,
       s.continuations, s.t[1] AS ttft_p50_ms, s.t[2] AS ttft_p95_ms, s.latency_p50_ms,
       s.completion_tokens, s.cost_usd, coalesce(k.kinds, MAP {{}}) AS failure_kinds
FROM s LEFT JOIN k USING (agent) ORDER BY s.attempts DESC, s.agent"""

_MODELS = f"""
SELECT model_version, count(*) AS decisions, min(ts) AS first_seen, max(ts) AS last_seen
FROM decisions WHERE {_WINDOW}
GROUP BY model_version ORDER BY first_seen, model_version"""

# Decisions are windowed on their ts, outcomes on theirs (an unmatched outcome has no
# decision time); "without" looks across all time on the other side.
_INTEGRITY = f"""
WITH d AS (SELECT request_id FROM decisions WHERE {_WINDOW}),
o AS (SELECT request_id, duplicate FROM outcomes WHERE {_WINDOW})
SELECT (SELECT count(*) FROM d) AS decisions,
       (SELECT count(*) FROM o) AS outcomes,
       (SELECT count(*) FROM o WHERE duplicate) AS duplicate_outcomes,
       (SELECT count(*) FROM (SELECT request_id FROM o WHERE NOT duplicate) f
            ANTI JOIN decisions x USING (request_id)) AS outcomes_without_decision,
       (SELECT count(*) FROM d
            ANTI JOIN ({_FIRST_OUTCOMES}) x USING (request_id)) AS decisions_without_outcome"""

BUCKETS: tuple[str, ...] = ("hour", "day")
SQL: MappingProxyType[str, str] = MappingProxyType(
    {
        "agents": _AGENTS,
        "savings": _SAVINGS,
        "timeseries:hour": _TIMESERIES.format(part="hour"),
        "timeseries:day": _TIMESERIES.format(part="day"),
        "breakers": _BREAKERS,
        "gateway": _GATEWAY,
        "models": _MODELS,
        "integrity": _INTEGRITY,
    }
)
REPORTS: tuple[str, ...] = (
    "agents",
    "savings",
    "timeseries",
    "breakers",
    "gateway",
    "models",
    "integrity",
)
REPORT_COLUMNS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "agents": (
            "agent", "decisions", "traffic_share", "outcomes", "success_rate", "mean_quality",
            "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "total_cost_usd", "mean_cost_usd",
        ),
        "savings": (
            "decisions_with_outcome", "actual_total_cost_usd", "actual_mean_cost_usd",
            "actual_mean_quality", "strongest_agent", "strongest_mean_cost_usd",
            "strongest_mean_quality", "always_strongest_total_cost_usd", "savings_usd",
            "savings_share",
        ),
        "timeseries": (
            "bucket", "decisions", "outcomes", "success_rate", "mean_quality", "cost_usd",
            "agent_share",
        ),
        "breakers": ("agent", "to_state", "transitions", "first_ts", "last_ts"),
        "gateway": (
            "agent", "attempts", "successes", "failures", "failovers", "mid_stream_failures",
            "continuations", "ttft_p50_ms", "ttft_p95_ms", "latency_p50_ms", "completion_tokens",
            "cost_usd", "failure_kinds",
        ),
        "models": ("model_version", "decisions", "first_seen", "last_seen"),
        "integrity": (
            "decisions", "outcomes", "duplicate_outcomes", "outcomes_without_decision",
            "decisions_without_outcome",
        ),
    }
)  # fmt: skip
