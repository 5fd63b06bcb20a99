"""An agent's upstream: where the gateway forwards the requests routed to it.

    Endpoint(base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key_env="OPENAI_API_KEY")

The key itself is never stored: `api_key_env` names the environment variable that holds
it in the serving process (None = no Authorization header). `headers` are sent with every
request; their values are treated as secrets: redacted in `public()` (what listings
return) and in registry snapshots written to the history (`redact_snapshot`). An agent
restored from a redacted snapshot is not eligible for the gateway until its endpoint is
given again (`unavailable_reason` says so).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["REDACTED", "Endpoint", "redact_snapshot", "unavailable_reason"]

REDACTED = "[redacted]"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an RFC 9110 token
# Set by the gateway itself, or hop-by-hop: a configured value would break the request.
_RESERVED_HEADERS = frozenset(
    {"authorization", "host", "content-length", "content-type", "connection", "transfer-encoding"}
)


class Endpoint(BaseModel):
    """An OpenAI-compatible upstream (`POST {base_url}/chat/completions`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(
        ..., max_length=2048, description="http(s) URL the OpenAI paths hang off, e.g. .../v1"
    )
    model: str = Field(
        ..., min_length=1, max_length=256, description="the upstream's name for the model"
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="environment variable holding the API key (None = no Authorization header)",
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="longest wait for the first byte of an answer and between two chunks",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra request headers (values are secrets)"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {value!r} must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("base_url must not carry credentials; use api_key_env")
        if parts.query or parts.fragment:
            raise ValueError(f"base_url {value!r} must have no query or fragment")
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 32:
            raise ValueError(f"headers: {len(value)} given; at most 32")
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(
                    f"header {name!r} is set by the gateway (use api_key_env for the key)"
                )
            if not isinstance(text, str) or "\r" in text or "\n" in text or len(text) > 8192:
                raise ValueError(f"header {name!r}: a value of one line, at most 8192 characters")
        return value

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def public(self) -> dict[str, Any]:
        """What a listing shows: no key (only its variable's name), no header values."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "timeout_s": self.timeout_s,
            "headers": dict.fromkeys(sorted(self.headers), REDACTED),
        }

    def secrets(self, environ: Mapping[str, str]) -> list[str]:
        """The values that must never be shown: the key (if set) and the header values."""
        key = environ.get(self.api_key_env) if self.api_key_env else None
        return [v for v in (key, *self.headers.values()) if v]


def unavailable_reason(
    endpoint: Endpoint | None, active: bool, environ: Mapping[str, str]
) -> str | None:
    """Why an agent cannot serve gateway traffic (None = it can)."""
    if not active:
        return "inactive"
    if endpoint is None:
        return "no endpoint (routable through /v1/route only)"
    if endpoint.api_key_env is not None and not environ.get(endpoint.api_key_env):
        return f"environment variable {endpoint.api_key_env} (its api_key_env) is not set"
    if REDACTED in endpoint.headers.values():
        return "header values were redacted in the restored registry; set the endpoint again"
    return None


def redact_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A registry snapshot with every endpoint header value replaced by REDACTED (for the history)."""
    agents = []
    for entry in snapshot.get("agents", []):
        agent = entry.get("agent", {})
        endpoint = agent.get("endpoint") if isinstance(agent, dict) else None
        if isinstance(endpoint, dict) and endpoint.get("headers"):
            endpoint = {**endpoint, "headers": dict.fromkeys(endpoint["headers"], REDACTED)}
            entry = {**entry, "agent": {**agent, "endpoint": endpoint}}
        agents.append(entry)
    return {**snapshot, "agents": agents} if "agents" in snapshot else snapshot
