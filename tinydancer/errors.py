"""The exception tree. Every error Tiny Dancer raises on purpose is one of these.

```
TinyDancerError                      base; catch this to catch everything below
├── InvalidRequestError              a request field is wrong (.field, .value, .expected)
│   └── EmbeddingError               wrong dimension, non-finite values, zero vector
├── ModelFileError                   a weights file cannot be used (.path, .tensor, .expected, .found)
├── ConfigError                      a configuration value is invalid
├── AgentError                       registry misuse (.agent)
│   ├── UnknownAgentError            no agent with that name
│   └── DuplicateAgentError          an agent with that name exists already
├── NoEligibleAgentError             constraints exclude every agent (.excluded: constraint -> agents)
├── AgentsUnavailableError           every eligible agent's circuit is open (.open_agents)
├── FeedbackError                    feedback refused: unknown / replayed / mismatched request
├── HistoryError                     the DuckDB history store cannot do what was asked
└── GatewayError                     an OpenAI-compatible route's error (.status, .type, .code,
                                     .param, .retry_after_s; .openai_body() is the HTTP body)
```

Messages say what was wrong, the offending value, and what would be valid, so that the
HTTP layer can pass them to the client as they are.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentError",
    "AgentsUnavailableError",
    "ConfigError",
    "DuplicateAgentError",
    "EmbeddingError",
    "FeedbackError",
    "GatewayError",
    "HistoryError",
    "InvalidRequestError",
    "ModelFileError",
    "NoEligibleAgentError",
    "TinyDancerError",
    "UnknownAgentError",
]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class TinyDancerError(Exception):
    """Base class of every error raised by Tiny Dancer on purpose."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what the HTTP layer returns as the error body)."""
        body: dict[str, Any] = {"error": type(self).__name__, "message": str(self)}
        for key in ("field", "expected", "agent", "path", "tensor", "found"):
            value = getattr(self, key, None)
            if value is not None:
                body[key] = value if isinstance(value, str | int | float | bool) else str(value)
        return body


class InvalidRequestError(TinyDancerError, ValueError):
    """A request field has an invalid value."""

    def __init__(self, field: str, value: Any, expected: str, detail: str = "") -> None:
        self.field = field
        self.value = value
        self.expected = expected
        message = f"{field}: got {_short(value)}; expected {expected}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class EmbeddingError(InvalidRequestError):
    """An embedding breaks the contract (dimension, finiteness, non-zero norm)."""


class ModelFileError(TinyDancerError):
    """A weights file is missing, corrupt, or does not match what the loader expects."""

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        tensor: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        self.path = path
        self.tensor = tensor
        self.expected = expected
        self.found = found
        where = f"{path}" + (f", tensor {tensor!r}" if tensor else "")
        message = f"{where}: {problem}"
        if expected is not None or found is not None:
            message += f" (expected {expected}, found {found})"
        super().__init__(message)


class ConfigError(TinyDancerError, ValueError):
    """A configuration value is invalid."""


class AgentError(TinyDancerError):
    """The registry was asked for something about an agent that cannot be done."""

    def __init__(self, agent: str, message: str) -> None:
        self.agent = agent
        super().__init__(message)


class UnknownAgentError(AgentError, KeyError):
    def __init__(self, agent: str, known: list[str] | None = None) -> None:
        hint = f"; registered agents: {sorted(known)}" if known is not None else ""
        super().__init__(agent, f"agent {agent!r} is not registered{hint}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class DuplicateAgentError(AgentError):
    def __init__(self, agent: str) -> None:
        super().__init__(agent, f"agent {agent!r} is already registered; use update() to change it")


class NoEligibleAgentError(TinyDancerError):
    """Every agent was excluded by a constraint; `.excluded` maps constraint -> agents."""

    def __init__(self, excluded: dict[str, list[str]]) -> None:
        self.excluded = excluded
        parts = [
            f"{constraint} excluded {sorted(agents)}" for constraint, agents in excluded.items()
        ]
        super().__init__("no agent satisfies the constraints: " + "; ".join(parts))

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["excluded"] = {k: sorted(v) for k, v in self.excluded.items()}
        return body


class AgentsUnavailableError(TinyDancerError):
    """Every agent that satisfies the constraints has an open circuit breaker."""

    def __init__(self, open_agents: list[str]) -> None:
        self.open_agents = sorted(open_agents)
        super().__init__(
            f"every eligible agent is unavailable (circuit open): {self.open_agents}; "
            "configure a fallback_agent or retry after the breaker cooldown"
        )


class FeedbackError(TinyDancerError, ValueError):
    """Feedback was refused (unknown, replayed or mismatched request id, bad agent)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body["reason"] = self.reason
        return body


class HistoryError(TinyDancerError):
    """The history store could not perform the operation."""


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(TinyDancerError):
    """An error of the OpenAI-compatible routes, in OpenAI's terms: HTTP `status`, error
    `type` (`error_type`, else from the status), `code`, `param` (the offending field), and for
    429 / 503 `retry_after_s` (sent as the Retry-After header)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.param = param
        self.type = error_type or _OPENAI_TYPES.get(status, "server_error")
        self.retry_after_s = retry_after_s
        super().__init__(message)

    def openai_body(self) -> dict[str, Any]:
        """`{"error": {"message", "type", "param", "code"}}`, as OpenAI's API answers."""
        return {
            "error": {
                "message": str(self),
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        """Response headers the error needs (Retry-After, whole seconds, at least 1)."""
        if self.retry_after_s is None:
            return {}
        return {"retry-after": str(max(1, int(-(-self.retry_after_s // 1))))}
