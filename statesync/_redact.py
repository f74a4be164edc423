"""Scrubbing secrets out of text that is about to be logged or shown."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Shapes of credentials that may reach a message even when no one passed them in:
# Stripe keys, bearer tokens, and passwords inside URLs (DSNs).
_PATTERNS = (
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{6,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]{8,}"),
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"),
)
MASK = "***"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets and credential-shaped strings masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(_masker, text)
    return text


def _masker(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if len(groups) == 2:
        return groups[0] + MASK + groups[1]
    if len(groups) == 1:
        return groups[0] + MASK
    return MASK
