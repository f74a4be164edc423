"""A loopback API emulator (Stripe-compatible today) with faults and mutations.

Used by tests and benchmarks to exercise resumable syncs against a real HTTP
server: deterministic data, scripted failures, data changing mid-sync, and a
request log to assert on.  APIs are plugins (see ``ApiPlugin``) mounted under
a path prefix in one shared server.
"""

from . import _requires  # noqa: F401  (first: names the missing extra)
from ._api import ApiPlugin, ApiRequest, ApiResponse, RecordMaker
from ._close import CloseApi, CloseRateLimit
from ._config import DEFAULT_SIZES, SandboxConfig
from ._faults import (
    FaultDecision,
    FaultInjector,
    FaultKind,
    FaultRule,
    FaultSettings,
    MutationRule,
    RateLimitStyle,
    WalkModes,
)
from ._graphql import GraphQLApi
from ._log import RequestLogEntry
from ._rest import RestApi
from ._server import Sandbox, default_plugins, serve
from ._stripe import StripeApi

__all__ = [
    "DEFAULT_SIZES",
    "ApiPlugin",
    "ApiRequest",
    "ApiResponse",
    "CloseApi",
    "CloseRateLimit",
    "FaultDecision",
    "FaultInjector",
    "FaultKind",
    "FaultRule",
    "FaultSettings",
    "GraphQLApi",
    "MutationRule",
    "RateLimitStyle",
    "RecordMaker",
    "RequestLogEntry",
    "RestApi",
    "Sandbox",
    "SandboxConfig",
    "StripeApi",
    "WalkModes",
    "default_plugins",
    "serve",
]
