"""Sandbox settings from the command line: one generic form, a few named shortcuts.

``--config PAYLOAD`` sets any :class:`SandboxConfig` field and ``--faults PAYLOAD`` takes
exactly what ``POST /_sandbox/faults`` takes (settings replace, ``rules`` and
``mutations`` append). A payload is JSON (``{"rate_limit": 5}``), TOML
(``'rate_limit = 5'``) or ``@FILE`` holding either. Both are repeatable, applied in
order; the named flags (``--rate-limit``, ``--latency``...) are fault settings applied
last. Every payload is validated before the server starts, with the bad key named.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from statesync._sandbox_flags import NAMED_FAULTS, PAYLOAD_HELP

from ._config import SandboxConfig

__all__ = ["NAMED_FAULTS", "PAYLOAD_HELP", "build_config", "load_payload", "merge_faults"]


def load_payload(text: str, *, flag: str) -> dict[str, Any]:
    """A table from JSON, TOML or ``@FILE`` (holding either); ``ValueError`` names ``flag``."""
    source = text
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{flag}: cannot read {text[1:]!r}: {exc.strerror}") from None
    try:
        loaded: object = json.loads(text)
    except ValueError:
        try:
            loaded = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{flag}: {source!r} is neither JSON nor TOML ({exc})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{flag}: expected a table (JSON object), got {source!r}")
    return loaded


def merge_faults(base: Mapping[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base`` the way the control endpoint applies it."""
    out = dict(base)
    for key, value in layer.items():
        if key in ("rules", "mutations"):
            out[key] = [*out.get(key, []), *value]
        else:
            out[key] = value
    return out


def build_config(
    base: SandboxConfig,
    *,
    configs: Sequence[str] = (),
    faults: Sequence[str] = (),
    named: Mapping[str, Any] | None = None,
) -> SandboxConfig:
    """``base`` with the ``--config`` payloads, then ``--faults``, then named flags."""
    names = {a.name for a in attrs.fields(SandboxConfig)}
    changes: dict[str, Any] = {}
    for text in configs:
        payload = load_payload(text, flag="--config")
        unknown = sorted(set(payload) - names)
        if unknown:
            expected = ", ".join(sorted(names))
            raise ValueError(f"--config: unknown sandbox settings {unknown}; expected: {expected}")
        changes.update(payload)
    fault_payload = dict(changes.pop("faults", base.faults))
    for text in faults:
        fault_payload = merge_faults(fault_payload, load_payload(text, flag="--faults"))
    shortcut = {k: v for k, v in (named or {}).items() if v is not None}
    fault_payload = merge_faults(fault_payload, shortcut)
    try:
        return attrs.evolve(base, faults=fault_payload, **changes)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid sandbox settings: {exc}") from None
