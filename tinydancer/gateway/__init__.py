"""The gateway: OpenAI-compatible chat completions that route, forward, fail over (also
mid-stream) and learn from every answer. See `Gateway` (gateway.py) and the README's
"The gateway" section; `fake_upstream` has OpenAI-compatible test servers."""

from tinydancer.gateway.config import GatewayConfig
from tinydancer.gateway.gateway import REQUEST_ID_HEADER, Gateway, GatewayResponse
from tinydancer.gateway.outcomes import AttemptOutcome, LocalSink, OutcomeSink
from tinydancer.gateway.planning import TextEncoder
from tinydancer.gateway.profiles import BUILTIN_PROFILES, Profile, RoutingOptions

__all__ = [
    "BUILTIN_PROFILES",
    "REQUEST_ID_HEADER",
    "AttemptOutcome",
    "Gateway",
    "GatewayConfig",
    "GatewayResponse",
    "LocalSink",
    "OutcomeSink",
    "Profile",
    "RoutingOptions",
    "TextEncoder",
]
