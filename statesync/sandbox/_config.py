"""Sandbox configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

DEFAULT_SIZES: Mapping[str, int] = {
    "customers": 250,
    "invoices": 180,
    "charges": 320,
    "subscriptions": 90,
    "products": 40,
    "close.lead": 200,
    "close.contact": 150,
    "close.opportunity": 80,
    "close.activity_call": 120,
    "close.activity_email": 60,
    "close.custom_field_lead": 8,
    "close.custom_field_shared": 4,
    "close.user": 6,
    "graphql.tickets": 150,
    "graphql.articles": 90,
    "rest.issues": 120,
}


def _sizes(value: Mapping[str, int]) -> Mapping[str, int]:
    sizes = dict(value)
    for entity, size in sizes.items():
        if not entity or "/" in entity or size < 0:
            raise ValueError(f"invalid entity size {entity!r}={size}")
    return sizes


def _faults(value: Mapping[str, Any]) -> Mapping[str, Any]:
    from ._faults import FaultInjector

    payload = dict(value)
    FaultInjector().apply_json(payload)  # refuse a bad payload at construction
    return payload


@attrs.frozen
class SandboxConfig:
    """What the sandbox serves: records per entity, seed, key and address.

    ``port=0`` lets the OS pick a free port (read it back from ``Sandbox.url``).
    ``faults`` is a payload of ``POST /_sandbox/faults`` applied at start and after
    every reset: the faults, rate limits and mutations the sandbox starts with.
    """

    sizes: Mapping[str, int] = attrs.field(factory=lambda: dict(DEFAULT_SIZES), converter=_sizes)
    seed: int = 0
    created_step: int = attrs.field(default=61, validator=attrs.validators.ge(1))
    """Seconds between neighbouring records' creation times (every fourth pair shares
    one); small values make a dense dataset, as for splitting time windows."""
    api_key: str = "sk_test_statesync_sandbox"
    host: str = "127.0.0.1"
    port: int = 0
    faults: Mapping[str, Any] = attrs.field(factory=dict, converter=_faults)
