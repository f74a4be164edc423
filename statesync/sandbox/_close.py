"""Close CRM-compatible list and retrieve endpoints, mounted at ``/api/v1/``.

Paths map to namespaced dataset entities: ``lead/`` -> ``close.lead``,
``activity/call/`` -> ``close.activity_call``, ``custom_field/lead/`` ->
``close.custom_field_lead``, ``user/`` -> ``close.user``; ``activity/`` lists every
activity entity of the dataset together, as Close does. Lists take ``_skip``/``_limit``
(``_skip`` above ``skip_cap`` is Close's 400), ``_order_by`` (``[-]date_created`` or
``[-]date_updated``, ties broken by id), ``_fields``, ``date_created__gt/gte/lt/lte``
(and ``date_updated__*``) and, on leads, a ``query`` of ``date_* >= "ISO"`` clauses
joined by ``and``. Every answer carries ``RateLimit: limit=L, remaining=R, reset=S``
from a per-key fixed window; past the limit the answer is a 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import attrs

from ._api import ApiRequest, ApiResponse, extract_api_key, json_response, key_fingerprint
from ._close_records import KINDS, NAMESPACE, CloseRecordMaker, is_activity, iso
from ._dataset import Dataset, EntityStore

JSONDict = dict[str, object]
_CACHE_LIMIT = 500_000
_VIEWS = 16
_WITH_TOTAL = frozenset({"lead", "contact", "opportunity"})
_DATE_FIELDS = ("date_created", "date_updated")
_OPS: Mapping[str, str] = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_CLAUSE = re.compile(r'^\s*(date_created|date_updated)\s*(>=|<=|>|<)\s*"?([^"\s]+)"?\s*$')
_STATUS_MESSAGES: Mapping[int, str] = {
    400: "Bad request.",
    401: "The API key provided is invalid.",
    404: "Not found.",
    429: "Too many requests. Wait for the number of seconds in the RateLimit reset.",
}
Filter = tuple[str, str, str]
"""(field, operator, normalized ISO value): values compare as strings once normalized."""


class CloseError(ValueError):
    """A request error that becomes Close's ``{"error": ...}`` or field-errors body."""

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def payload(self) -> JSONDict:
        if self.field is not None:
            return {"errors": [], "field-errors": {self.field: self.message}}
        return {"error": self.message}


@attrs.frozen
class CloseRateLimit:
    """``limit`` requests per ``window`` seconds and API key (fixed windows)."""

    limit: int = attrs.field(default=10_000, validator=attrs.validators.ge(1))
    window: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))


class _RateWindows:
    """Per-key fixed windows; thread-safe because handler threads share the plugin."""

    def __init__(self, settings: CloseRateLimit) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._windows: dict[str | None, tuple[float, int]] = {}

    def take(self, key_id: str | None, *, count: bool = True) -> tuple[bool, int, float]:
        """Count a request; return (allowed, remaining, seconds until the window resets)."""
        limit, length = self.settings.limit, self.settings.window
        with self._lock:
            now = time.monotonic()
            start, used = self._windows.get(key_id, (now, 0))
            if now >= start + length:
                start, used = now, 0
            used += 1 if count else 0
            self._windows[key_id] = (start, used)
        return used <= limit, max(0, limit - used), max(0.0, start + length - now)

    def header(self, remaining: int, reset: float) -> dict[str, str]:
        value = f"limit={self.settings.limit}, remaining={remaining}, reset={reset:.3f}"
        return {"RateLimit": value}


def path_of(kind: str) -> str:
    """The URL path (without prefix) of an entity kind: ``activity_call`` -> ``activity/call/``."""
    for parent in ("custom_field", "activity"):
        if kind.startswith(parent + "_"):
            return f"{parent}/{kind[len(parent) + 1 :]}/"
    return f"{kind}/"


_KIND_OF_PATH: Mapping[str, str] = {path_of(kind).rstrip("/"): kind for kind in KINDS}


class CloseApi:
    """The Close plugin: claims the ``close.*`` entities of the dataset.

    ``skip_cap`` is the largest ``_skip`` accepted (Close's is 250,000 on most
    resources; tests set a small one to exercise deep pagination).
    """

    prefix = "/api/v1/"

    def __init__(
        self,
        *,
        skip_cap: int = 250_000,
        max_limit: int = 100,
        rate_limit: CloseRateLimit | None = None,
    ) -> None:
        self.skip_cap = skip_cap
        self.max_limit = max_limit
        self._rate = _RateWindows(rate_limit or CloseRateLimit())
        self._cache: dict[bytes, JSONDict] = {}
        self._views: OrderedDict[tuple[object, ...], list[JSONDict]] = OrderedDict()
        self._views_lock = threading.Lock()

    def record_maker(self, entity: str) -> CloseRecordMaker | None:
        kind = entity.removeprefix(NAMESPACE)
        return CloseRecordMaker(kind) if entity.startswith(NAMESPACE) and kind in KINDS else None

    def entity_of(self, path: str) -> str | None:
        kind, _ = _route(path[len(self.prefix) :])
        return None if kind is None else NAMESPACE + kind

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiResponse | None:
        header = request.headers.get("authorization", "")
        # Close API keys go in HTTP basic auth (key as user name, empty password).
        given = extract_api_key(request.headers) if header[:6].lower() == "basic " else None
        if given == api_key:
            return None
        _, remaining, reset = self._rate.take(key_fingerprint(given), count=False)
        response = self._error(CloseError(401, _STATUS_MESSAGES[401]), request.path)
        return attrs.evolve(response, headers=self._rate.header(remaining, reset))

    def error_response(self, status: int) -> ApiResponse:
        message = _STATUS_MESSAGES.get(status, "An internal error occurred in the sandbox.")
        response = json_response(status, {"error": message})
        if status != 429:
            return response
        # An injected 429 has no window of ours behind it; 1 s matches the fault
        # injector's default Retry-After.
        return attrs.evolve(response, headers=self._rate.header(0, 1.0))

    def handle(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        allowed, remaining, reset = self._rate.take(
            key_fingerprint(extract_api_key(request.headers))
        )
        headers = self._rate.header(remaining, reset)
        if not allowed:
            response = self.error_response(429)
            return attrs.evolve(response, headers={**headers, "Retry-After": str(math.ceil(reset))})
        try:
            response = self._answer(request, dataset)
        except CloseError as error:
            response = self._error(error, request.path)
        return attrs.evolve(response, headers={**response.headers, **headers})

    def _error(self, error: CloseError, path: str) -> ApiResponse:
        return json_response(error.status, error.payload(), self.entity_of(path))

    def _answer(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        kind, rest = _route(request.path[len(self.prefix) :])
        stores = [] if kind is None else _stores(kind, dataset)
        if request.method != "GET" or kind is None or not stores or len(rest) > 1:
            raise CloseError(404, f"Unrecognized request URL ({request.method}: {request.path}).")
        entity = NAMESPACE + kind
        if rest:
            return json_response(200, _retrieve(stores, kind, rest[0]), entity)
        return json_response(200, self._list(kind, stores, request.query), entity)

    def _list(self, kind: str, stores: Sequence[EntityStore], query: Mapping[str, str]) -> JSONDict:
        skip, limit = self._skip(query), self._limit(query)
        filters = _filters(query, allow_query=kind == "lead")
        field, descending = _order_by(query)
        matching = self._matching(stores, filters, field, descending)
        page = [_project(r, query.get("_fields")) for r in matching[skip : skip + limit]]
        body: JSONDict = {"has_more": skip + limit < len(matching), "data": page}
        if kind in _WITH_TOTAL:
            body["total_results"] = len(matching)
        return body

    def _matching(
        self, stores: Sequence[EntityStore], filters: list[Filter], field: str, descending: bool
    ) -> list[JSONDict]:
        """The filtered, sorted list a query pages through. Cached per store version, so a
        sync paging through a large list pays the filter and the sort once, not per page
        (the emulator must keep up with 100 requests a second on 50,000 records)."""
        key = (
            tuple((store.name, id(store), store.version) for store in stores),
            tuple(filters),
            field,
            descending,
        )
        with self._views_lock:
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
                return found
        matching = [r for store in stores for r in self._decoded(store)]
        matching = [r for r in matching if all(_match(r, f) for f in filters)]
        matching.sort(key=lambda r: (str(r.get(field, "")), str(r["id"])), reverse=descending)
        with self._views_lock:
            self._views[key] = matching
            while len(self._views) > _VIEWS:
                self._views.popitem(last=False)
        return matching

    def _decoded(self, store: EntityStore) -> list[JSONDict]:
        """Live records, decoded once per version: a store keeps each record's bytes
        until it changes, so the bytes are the cache key (and the cache never serves a
        stale version). Filtering needs every record on every list request."""
        everything = store.bounds(None, None, None, None)
        encoded = store.page_older(everything, len(everything) + 1).items
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        out = []
        for body in encoded:
            record = self._cache.get(body)
            if record is None:
                record = self._cache[body] = _public(json.loads(body))
            out.append(record)
        return out

    def _skip(self, query: Mapping[str, str]) -> int:
        skip = _int(query, "_skip", 0)
        if skip < 0:
            raise CloseError(400, "Must be a non-negative integer.", field="_skip")
        if skip > self.skip_cap:
            raise CloseError(400, skip_cap_message(self.skip_cap))
        return skip

    def _limit(self, query: Mapping[str, str]) -> int:
        limit = _int(query, "_limit", 100)
        if not 1 <= limit <= self.max_limit:
            raise CloseError(400, f"Must be between 1 and {self.max_limit}.", field="_limit")
        return limit


def skip_cap_message(cap: int) -> str:
    """Close's wording for a ``_skip`` past the resource's cap (an HTTP 400)."""
    return (
        f"The maximum _skip for this resource is {cap}. Narrow the query, "
        "for example with a date_created range, to page deeper."
    )


def _route(relative: str) -> tuple[str | None, list[str]]:
    """``activity/call/acti_x/`` -> (``activity_call``, [``acti_x``])."""
    parts = [p for p in relative.split("/") if p]
    for width in (2, 1):
        kind = _KIND_OF_PATH.get("/".join(parts[:width])) if len(parts) >= width else None
        if kind is not None:
            return kind, parts[width:]
    return None, parts


def _stores(kind: str, dataset: Dataset) -> list[EntityStore]:
    if kind != "activity":
        return [dataset.store(NAMESPACE + kind)] if NAMESPACE + kind in dataset else []
    names = [e for e in dataset.entities if e.startswith(NAMESPACE)]
    return [dataset.store(e) for e in names if is_activity(e.removeprefix(NAMESPACE))]


def _retrieve(stores: Sequence[EntityStore], kind: str, record_id: str) -> JSONDict:
    for store in stores:
        body = store.get(record_id)
        if body is not None:
            return _public(json.loads(body))
    name = kind.replace("_", " ").title()
    raise CloseError(404, f"Empty query: {name} matching query does not exist.")


def _public(record: JSONDict) -> JSONDict:
    """Drop the dataset's integer ``created``: Close records only have ISO dates."""
    return {k: v for k, v in record.items() if k != "created"}


def _project(record: JSONDict, fields: str | None) -> JSONDict:
    if not fields:
        return record
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    return {f: record[f] for f in wanted if f in record}


def _int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise CloseError(400, "Must be an integer.", field=name) from None


def _normalize(value: str, name: str) -> str:
    """Any ISO-8601 date/datetime -> the stored format, so comparisons are string ones."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CloseError(400, f"Invalid date: {value!r}.", field=name) from None
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _filters(query: Mapping[str, str], *, allow_query: bool) -> list[Filter]:
    filters = [
        (field, symbol, _normalize(query[f"{field}__{op}"], f"{field}__{op}"))
        for field in _DATE_FIELDS
        for op, symbol in _OPS.items()
        if f"{field}__{op}" in query
    ]
    text = query.get("query", "").strip()
    if text and allow_query:
        filters.extend(_query_clauses(text))
    return filters


def _query_clauses(text: str) -> list[Filter]:
    """The subset of Close's lead search language the emulator knows: date clauses."""
    clauses = []
    for part in re.split(r"\s+and\s+", text, flags=re.IGNORECASE):
        found = _CLAUSE.match(part)
        if found is None:
            raise CloseError(400, f"Unsupported query clause: {part!r}.", field="query")
        field, symbol, value = found.groups()
        clauses.append((field, symbol, _normalize(value, "query")))
    return clauses


def _match(record: JSONDict, filt: Filter) -> bool:
    field, symbol, value = filt
    have = str(record.get(field, ""))
    if symbol == ">":
        return have > value
    if symbol == ">=":
        return have >= value
    if symbol == "<":
        return have < value
    return have <= value


def _order_by(query: Mapping[str, str]) -> tuple[str, bool]:
    raw = query.get("_order_by", "-date_created")
    field = raw.removeprefix("-")
    if field not in _DATE_FIELDS:
        raise CloseError(400, f"Cannot order by {raw!r}.", field="_order_by")
    return field, raw.startswith("-")
