"""The sandbox's named fault flags, shared by ``statesync sandbox`` and
``python -m statesync.sandbox`` (kept apart from the sandbox package, which needs the
graphql extra, so the CLI loads without it)."""

from __future__ import annotations

from collections.abc import Mapping

NAMED_FAULTS: Mapping[str, tuple[type, str]] = {
    "latency": (float, "Seconds added to every API answer"),
    "rate_limit": (float, "Requests per second per API key"),
    "burst": (int, "Requests a key may send at once (default: the rate, rounded)"),
    "rate_limit_style": (str, "How a refusal looks: stripe (429 + Retry-After), github "
                         "(200 + errors[type=RATE_LIMITED] + X-RateLimit-*), close "
                         "(429 + RateLimit header)"),
    "rate_limit_separator": (str, "',' or ';' between the parts of Close's RateLimit header"),
    "retry_after": (int, "The Retry-After seconds of a stripe-style refusal"),
    "error_rate": (float, "Share of requests answered 500/503"),
}  # fmt: skip
"""Fault settings with a flag of their own: name -> (type, help)."""

PAYLOAD_HELP = "JSON, TOML or @FILE"
