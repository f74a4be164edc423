"""Thread-safe fault injection: latency, rate limits, random errors, scripted rules.

Randomness comes from one ``random.Random(seed)`` with exactly one draw per API
request, so a single-threaded client sees the same faults on every run.

Rate limits are per API key (one account) and answered in one of three styles
(``rate_limit_style``), each the way a real API does it:

``stripe``
    a token bucket (``rate_limit`` per second, ``burst``); a refusal is a 429 with
    ``Retry-After: <retry_after>`` and no ``Stripe-Should-Retry``; answers carry no quota.
``github``
    fixed windows of ``burst / rate_limit`` seconds aligned to the epoch, ``burst``
    requests each; every answer carries ``X-RateLimit-Limit``/``-Remaining``/``-Used``
    and ``X-RateLimit-Reset`` (epoch seconds, GitHub's form); a refusal is an HTTP 200
    with ``{"errors": [{"type": "RATE_LIMITED", ...}]}`` and ``X-RateLimit-Remaining: 0``.
``close``
    the same windows; every answer carries ``RateLimit: limit=L, remaining=R, reset=S``
    (parts joined by ``rate_limit_separator``, ``,`` or ``;``); a refusal is a 429.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from ._dataset import Where

FaultKind = Literal["status", "malformed", "truncated", "missing_data", "drop"]
_KINDS = ("status", "malformed", "truncated", "missing_data", "drop")
_WHERES = ("head", "tail", "random")
RateLimitStyle = Literal["stripe", "github", "close"]
_STYLES = ("stripe", "github", "close")
_GITHUB_LIMITED = json.dumps(
    {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}
)


def _frozen_headers(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


def _check_rate(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value}")


@attrs.frozen
class FaultRule:
    """Answer the ``nth`` .. ``nth + times - 1`` requests matching ``path_prefix``.

    ``path_prefix=None`` matches every API request.  ``kind`` is ``status``
    (answer ``status`` with ``headers`` and ``body``, or the API's error JSON),
    ``malformed``/``truncated``/``missing_data`` (a broken 200) or ``drop``
    (close the connection without answering).
    """

    path_prefix: str | None
    nth: int = attrs.field(validator=attrs.validators.ge(1))
    times: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    status: int = 500
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    body: str | None = None
    kind: FaultKind = attrs.field(default="status", validator=attrs.validators.in_(_KINDS))


@attrs.frozen
class MutationRule:
    """Change ``entity`` right after the ``after_request``-th API request is answered."""

    entity: str
    after_request: int = attrs.field(validator=attrs.validators.ge(0))
    insert: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    update: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    delete: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    where: Where = attrs.field(default="head", validator=attrs.validators.in_(_WHERES))
    cursor: bool = False
    """Also delete the record the entity's last list page ended with: the record a
    Stripe client sends as ``starting_after`` next (a cursor that vanishes)."""
    insert_where: Where | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(_WHERES))
    )
    """Where inserted records go in creation order: ``None``/``head`` after every record
    (the newest), ``tail`` before every record, ``random`` among them (backdated inserts
    that land behind an oldest-first walk)."""


@attrs.frozen
class FaultSettings:
    """Continuous faults; ``rate_limit`` is requests/second per API key.

    ``burst`` defaults to ``rate_limit`` rounded (at least 1); ``rate_limit_style``
    picks how the limit answers (see the module docs); the ``*_rate`` fields are shares
    of requests in [0, 1] and are drawn from one band each.
    """

    latency: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    rate_limit: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    burst: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    retry_after: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    rate_limit_style: RateLimitStyle = attrs.field(
        default="stripe", validator=attrs.validators.in_(_STYLES)
    )
    rate_limit_separator: str = attrs.field(default=",", validator=attrs.validators.in_(",;"))
    error_rate: float = attrs.field(default=0.0, validator=_check_rate)
    malformed_rate: float = attrs.field(default=0.0, validator=_check_rate)
    truncated_rate: float = attrs.field(default=0.0, validator=_check_rate)
    missing_data_rate: float = attrs.field(default=0.0, validator=_check_rate)


@attrs.frozen
class FaultDecision:
    """What to do with one request; ``kind=None`` means serve it normally."""

    kind: FaultKind | Literal["rate_limit", "error"] | None = None
    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: str | None = None


_NO_FAULT = FaultDecision()


# -- walk modes: servers that page differently from what a client was told -----------


def _names(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class WalkModes:
    """Server behaviours that break naive walks, switchable like the other faults.

    ``skip_cap``: the largest ``_skip`` the server accepts on paths under
    ``skip_cap_prefix`` (Close's lists by default), answered past it with Close's 400
    wording; the client is not told (unlike ``CloseApi(skip_cap=...)``, which is also
    a hint a test passes the connector). ``ignore_params``: query parameters the server
    drops before answering, as a server ignoring a filter does: a name matches itself
    and its bracketed forms (``created`` drops ``created[gte]``...), e.g.
    ``["created"]`` for Stripe, ``["date_created__gte", "query"]`` for Close windows.
    ``vanished_cursors``: a deleted record named as Stripe's ``starting_after`` or
    ``ending_before`` is the real API's 400 ``resource_missing`` (by default the
    sandbox keeps deleted records as cursors that still work).
    """

    skip_cap: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    skip_cap_prefix: str = "/api/v1/"
    ignore_params: tuple[str, ...] = attrs.field(default=(), converter=_names)
    vanished_cursors: bool = False

    def filtered(self, query: Mapping[str, str]) -> Mapping[str, str]:
        """``query`` without the parameters the server ignores."""
        if not self.ignore_params:
            return query
        return {k: v for k, v in query.items() if not self._ignored(k)}

    def _ignored(self, name: str) -> bool:
        return any(name == p or name.startswith(p + "[") for p in self.ignore_params)

    def decide(self, path: str, query: Mapping[str, str]) -> FaultDecision | None:
        """The 400 for a ``_skip`` past the unannounced cap, if this request passes it."""
        if self.skip_cap is None or not path.startswith(self.skip_cap_prefix):
            return None
        try:
            skip = int(query.get("_skip", "0"))
        except ValueError:
            return None  # the API's own validation answers that
        if skip <= self.skip_cap:
            return None
        from ._close import skip_cap_message

        body = json.dumps({"error": skip_cap_message(self.skip_cap)})
        return FaultDecision("status", 400, {}, body)


_WALK_FIELDS = frozenset(a.name for a in attrs.fields(WalkModes))


@attrs.define
class _Bucket:
    tokens: float
    updated: float


class FaultInjector:
    """Holds the fault configuration and decides the fate of each API request."""

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to no faults, fresh counters, fresh random sequence."""
        with self._lock:
            self._settings = FaultSettings()
            self._rules: list[FaultRule] = []
            self._hits: list[int] = []
            self._mutations: list[MutationRule] = []
            self._buckets: dict[str | None, _Bucket] = {}
            self._windows: dict[str | None, tuple[float, int]] = {}
            self._rng = random.Random(self._seed)
            self._walk = WalkModes()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    @property
    def walk(self) -> WalkModes:
        return self._walk

    def configure_walk(self, **changes: Any) -> WalkModes:
        """Change walk modes, e.g. ``configure_walk(skip_cap=120, ignore_params=["query"])``."""
        with self._lock:
            self._walk = attrs.evolve(self._walk, **changes)
            return self._walk

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    @property
    def mutations(self) -> list[MutationRule]:
        with self._lock:
            return list(self._mutations)

    def configure(self, **changes: object) -> FaultSettings:
        """Change some settings, e.g. ``configure(latency=0.05, error_rate=0.1)``.

        Validation is done by ``FaultSettings`` (unknown names raise ``TypeError``).
        """
        fields: dict[str, Any] = dict(changes)
        with self._lock:
            self._settings = attrs.evolve(self._settings, **fields)
            if {"rate_limit", "burst", "rate_limit_style"} & set(changes):
                self._buckets.clear()
                self._windows.clear()
            return self._settings

    def add_rule(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)
            self._hits.append(0)

    def add_mutation(self, rule: MutationRule) -> None:
        with self._lock:
            self._mutations.append(rule)

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()
            self._hits.clear()
            self._mutations.clear()

    def decide(self, path: str, key_id: str | None) -> FaultDecision:
        """Count the request against every rule and pick at most one fault."""
        with self._lock:
            draw = self._rng.random()
            fired = self._scripted(path)
            if fired is not None:
                return fired
            refused, quota = self._limit(key_id)
            if refused is not None:
                return refused
            decision = self._random(draw)
            return attrs.evolve(decision, headers={**quota, **decision.headers})

    def _limit(self, key_id: str | None) -> tuple[FaultDecision | None, Mapping[str, str]]:
        """The refusal when the key is over its limit, and the quota headers of an answer."""
        s = self._settings
        if s.rate_limit is None:
            return None, {}
        if s.rate_limit_style == "stripe":
            if self._take_token(key_id):
                return None, {}
            return FaultDecision("rate_limit", 429, {"Retry-After": str(s.retry_after)}), {}
        limit = s.burst or max(1, round(s.rate_limit))
        length = limit / s.rate_limit
        now = time.time()
        start = math.floor(now / length) * length
        window, used = self._windows.get(key_id, (start, 0))
        used = used + 1 if window == start else 1
        self._windows[key_id] = (start, used)
        remaining, reset = max(0, limit - used), start + length
        if s.rate_limit_style == "github":
            quota = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Used": str(min(used, limit)),
                "X-RateLimit-Reset": str(math.ceil(reset)),
                "X-RateLimit-Resource": "graphql",
            }
            refused = FaultDecision("rate_limit", 200, quota, _GITHUB_LIMITED)
        else:
            sep = s.rate_limit_separator + " "
            parts = (f"limit={limit}", f"remaining={remaining}", f"reset={reset - now:.3f}")
            quota = {"RateLimit": sep.join(parts)}
            refused = FaultDecision("rate_limit", 429, quota)
        return (refused if used > limit else None), quota

    def due_mutations(self, request_number: int) -> list[MutationRule]:
        """Remove and return the mutation rules due once request ``request_number`` is done."""
        with self._lock:
            due = [m for m in self._mutations if m.after_request <= request_number]
            self._mutations = [m for m in self._mutations if m.after_request > request_number]
            return due

    def _scripted(self, path: str) -> FaultDecision | None:
        fired: FaultDecision | None = None
        for position, rule in enumerate(self._rules):
            if rule.path_prefix is not None and not path.startswith(rule.path_prefix):
                continue
            self._hits[position] += 1
            hit = self._hits[position]
            if fired is None and rule.nth <= hit < rule.nth + rule.times:
                fired = FaultDecision(rule.kind, rule.status, rule.headers, rule.body)
        return fired

    def _take_token(self, key_id: str | None) -> bool:
        rate = self._settings.rate_limit
        if rate is None:
            return True
        burst = float(self._settings.burst or max(1, round(rate)))
        now = time.monotonic()
        bucket = self._buckets.setdefault(key_id, _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _random(self, draw: float) -> FaultDecision:
        s = self._settings
        if draw < s.error_rate:
            # The lower half of the error band answers 500, the upper half 503.
            return FaultDecision("error", 500 if draw < s.error_rate / 2 else 503)
        edge = s.error_rate
        for kind, rate in (
            ("malformed", s.malformed_rate),
            ("truncated", s.truncated_rate),
            ("missing_data", s.missing_data_rate),
        ):
            if edge <= draw < edge + rate:
                return FaultDecision(kind, 200)  # type: ignore[arg-type]
            edge += rate
        return _NO_FAULT

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                **attrs.asdict(self._settings),
                **attrs.asdict(self._walk),
                "rules": [attrs.asdict(rule) for rule in self._rules],
                "rule_hits": list(self._hits),
                "mutations": [attrs.asdict(rule) for rule in self._mutations],
            }

    def apply_json(self, payload: Mapping[str, Any]) -> None:
        """HTTP form: settings fields replace, ``rules``/``mutations`` are appended.

        ``{"clear_rules": true}`` drops earlier rules and mutations first.
        """
        if payload.get("clear_rules"):
            self.clear_rules()
        rules = [FaultRule(**rule) for rule in payload.get("rules", [])]
        mutations = [MutationRule(**rule) for rule in payload.get("mutations", [])]
        names = {field.name for field in attrs.fields(FaultSettings)}
        unknown = set(payload) - names - _WALK_FIELDS - {"rules", "mutations", "clear_rules"}
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        self.configure(**{k: v for k, v in payload.items() if k in names})
        self.configure_walk(**{k: v for k, v in payload.items() if k in _WALK_FIELDS})
        for rule in rules:
            self.add_rule(rule)
        for mutation in mutations:
            self.add_mutation(mutation)
