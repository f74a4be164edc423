"""A generic REST API at ``/rest/``, served in each common pagination style.

Entities are the dataset's ``rest.*`` stores (``rest.issues`` is at
``/rest/<style>/issues``). Every style lists records oldest first, ordered by
``(created, id)``, and takes the same filters: ``created_gte`` / ``created_lt`` (Unix
seconds, lower inclusive, upper exclusive), ``since`` (ISO 8601, ``updated_at >=``) and
``updated_after`` (ISO 8601, ``updated_at >``). Styles:

``offset``   ``GET ?_start=&_limit=``; a JSON array; the total in ``X-Total-Count``.
``page``     ``GET ?page=&per_page=`` (from 1); ``{"items": [...], "total": N}``.
``cursor``   ``GET ?after=&limit=``; ``{"results": [...], "paging": {"next": {"after": C}}}``,
             no ``paging`` on the last page.
``next``     ``GET ?limit=`` then the URL in ``next_page``; ``{"data": [...], "next_page": U}``.
``link``     ``GET ?page=&per_page=``; a JSON array and RFC 8288 ``Link: <U>; rel="next"``.
``search``   ``POST`` a JSON body ``{"offset", "limit", "filter": {...}}``; ``{"hits": [...],
             "has_more": B, "total": N}``.

Credentials: ``Authorization: Bearer KEY``, HTTP basic with the key as user name,
``X-API-Key: KEY`` or ``?api_key=KEY``. Errors are ``{"error": {"code", "message"}}``.
Faults and mutations are the server's, as for every other API.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
import threading
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from ._api import ApiRequest, ApiResponse, JSONDict, extract_api_key, json_response
from ._dataset import Dataset, EntityStore

PREFIX = "/rest/"
NAMESPACE = "rest."
STYLES = ("offset", "page", "cursor", "next", "link", "search")
MAX_PAGE = 100
_MESSAGES: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "The request is invalid."),
    401: ("unauthorized", "Bad credentials."),
    404: ("not_found", "Not found."),
    429: ("rate_limited", "API rate limit exceeded."),
    500: ("internal", "An internal error occurred."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("unavailable", "Service unavailable."),
}


class RestError(ValueError):
    def __init__(self, status: int, message: str | None = None) -> None:
        code, default = _MESSAGES.get(status, ("error", "Error."))
        super().__init__(message or default)
        self.status = status
        self.code = code
        self.message = message or default


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class RestRecordMaker:
    """Issue-like records: ``id``, ``number``, ``created`` (s), ``created_ms``, ISO dates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def make(self, index: int, created: int, rng: random.Random) -> JSONDict:
        return {
            "id": f"{self.kind[:3]}_{index:07d}",
            "number": index + 1,
            "created": created,
            "created_ms": created * 1000,
            "created_at": _iso(created),
            "updated_at": _iso(created),
            "title": f"{self.kind} {index + 1}",
            "state": rng.choice(["open", "closed"]),
            "revision": 0,
        }

    def touch(self, record: JSONDict, revision: int) -> None:
        record["revision"] = revision
        record["updated_at"] = _iso(record["created"] + 86_400 + revision)


class RestApi:
    """The REST plugin: claims every ``rest.*`` entity of the dataset."""

    prefix = PREFIX

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by the store itself: a resized entity's new store may reuse an id().
        self._views: weakref.WeakKeyDictionary[EntityStore, tuple[int, list[JSONDict]]] = (
            weakref.WeakKeyDictionary()
        )

    def record_maker(self, entity: str) -> RestRecordMaker | None:
        kind = entity.removeprefix(NAMESPACE)
        return RestRecordMaker(kind) if entity.startswith(NAMESPACE) and kind else None

    def entity_of(self, path: str) -> str | None:
        parts = [p for p in path[len(PREFIX) :].split("/") if p]
        return NAMESPACE + parts[1] if len(parts) == 2 else None

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiResponse | None:
        given = (
            extract_api_key(request.headers)
            or request.headers.get("x-api-key")
            or request.query.get("api_key")
        )
        return None if given == api_key else self._error(RestError(401))

    def error_response(self, status: int) -> ApiResponse:
        return self._error(RestError(status))

    def handle(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        try:
            return self._answer(request, dataset)
        except RestError as error:
            return self._error(error)

    @staticmethod
    def _error(error: RestError) -> ApiResponse:
        return json_response(
            error.status, {"error": {"code": error.code, "message": error.message}}
        )

    def _answer(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        parts = [p for p in request.path[len(PREFIX) :].split("/") if p]
        entity = NAMESPACE + parts[1] if len(parts) == 2 else ""
        if len(parts) != 2 or parts[0] not in STYLES or entity not in dataset:
            raise RestError(404, f"Unknown resource {request.path}.")
        style = parts[0]
        if (request.method == "POST") != (style == "search"):
            raise RestError(404, f"{request.method} is not served at {request.path}.")
        query = _search_query(request.body) if style == "search" else dict(request.query)
        records = self._filtered(dataset.store(entity), query)
        return _STYLE_HANDLERS[style](request, query, records, entity)

    def _filtered(self, store: EntityStore, query: Mapping[str, Any]) -> list[JSONDict]:
        everything = self._ascending(store)
        lower = _int(query, "created_gte", None)
        upper = _int(query, "created_lt", None)
        created = [r["created"] for r in everything]
        lo = 0 if lower is None else bisect.bisect_left(created, lower)
        hi = len(everything) if upper is None else bisect.bisect_left(created, upper)
        chosen = everything[lo:hi]
        since = _date(query, "since")
        if since is not None:
            chosen = [r for r in chosen if _parse(r["updated_at"]) >= since]
        after = _date(query, "updated_after")
        if after is not None:
            chosen = [r for r in chosen if _parse(r["updated_at"]) > after]
        return chosen

    def _ascending(self, store: EntityStore) -> list[JSONDict]:
        """Live records oldest first, decoded once per store version."""
        version = store.version
        with self._lock:
            found = self._views.get(store)
        if found is not None and found[0] == version:
            return found[1]
        window = store.bounds(None, None, None, None)
        items = store.page_newer(window, len(window) + 1).items
        records = [json.loads(body) for body in reversed(items)]
        with self._lock:
            self._views[store] = (version, records)
        return records


def _search_query(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise RestError(400, "The body is not JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("filter", {}), dict):
        raise RestError(400, "The body must be an object with an object 'filter'.")
    return {**doc.get("filter", {}), **{k: v for k, v in doc.items() if k != "filter"}}


def _int(query: Mapping[str, Any], name: str, default: int | None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise RestError(400, f"{name} must be an integer, got {raw!r}.") from None


def _size(query: Mapping[str, Any], name: str) -> int:
    size = _int(query, name, 30)
    assert size is not None
    if not 1 <= size <= MAX_PAGE:
        raise RestError(400, f"{name} must be between 1 and {MAX_PAGE}.")
    return size


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _date(query: Mapping[str, Any], name: str) -> datetime | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return _parse(str(raw))
    except ValueError:
        raise RestError(400, f"{name} must be an ISO 8601 date, got {raw!r}.") from None


def _base(request: ApiRequest) -> str:
    host = request.headers.get("host", "127.0.0.1")
    return f"http://{host}{request.path}"


def _offset(
    request: ApiRequest, query: Mapping[str, Any], records: list[JSONDict], entity: str
) -> ApiResponse:
    start, limit = _int(query, "_start", 0) or 0, _size(query, "_limit")
    response = json_response(200, records[start : start + limit], entity)
    return _with_headers(response, {"X-Total-Count": str(len(records))})


def _page(
    request: ApiRequest, query: Mapping[str, Any], records: list[JSONDict], entity: str
) -> ApiResponse:
    page, size = _page_number(query), _size(query, "per_page")
    items = records[(page - 1) * size : page * size]
    return json_response(200, {"items": items, "total": len(records)}, entity)


def _page_number(query: Mapping[str, Any]) -> int:
    page = _int(query, "page", 1) or 0
    if page < 1:
        raise RestError(400, "page must be at least 1.")
    return page


def _after_index(records: list[JSONDict], token: str | None) -> int:
    """Where the records after the cursor start; the cursor record may be deleted since."""
    if not token:
        return 0
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        raise RestError(400, "Invalid cursor.") from None
    keys = [(r["created"], r["id"]) for r in records]
    return bisect.bisect_right(keys, (created, ident))


def _token(record: JSONDict) -> str:
    return base64.urlsafe_b64encode(json.dumps([record["created"], record["id"]]).encode()).decode()


def _cursor(
    request: ApiRequest, query: Mapping[str, Any], records: list[JSONDict], entity: str
) -> ApiResponse:
    size = _size(query, "limit")
    start = _after_index(records, query.get("after"))
    items = records[start : start + size]
    body: JSONDict = {"results": items}
    if start + size < len(records) and items:
        body["paging"] = {"next": {"after": _token(items[-1])}}
    return json_response(200, body, entity)


def _next(
    request: ApiRequest, query: Mapping[str, Any], records: list[JSONDict], entity: str
) -> ApiResponse:
    size = _size(query, "limit")
    start = _after_index(records, query.get("cursor"))
    items = records[start : start + size]
    following = None
    if start + size < len(records) and items:
        rest = {k: v for k, v in query.items() if k != "cursor"}
        following = f"{_base(request)}?{urlencode({**rest, 'cursor': _token(items[-1])})}"
    return json_response(200, {"data": items, "next_page": following}, entity)


def _link(
    request: ApiRequest, query: Mapping[str, Any], records: list[JSONDict], entity: str
) -> ApiResponse:
    page, size = _page_number(query), _size(query, "per_page")
    items = records[(page - 1) * size : page * size]
    links = []
    last = max(1, -(-len(records) // size))
    if page < last:
        links.append(f'<{_base(request)}?{urlencode({**query, "page": page + 1})}>; rel="next"')
    links.append(f'<{_base(request)}?{urlencode({**query, "page": last})}>; rel="last"')
    return _with_headers(json_response(200, items, entity), {"Link": ", ".join(links)})


def _search(
    request: ApiRequest, query: Mapping[str, Any], records: list[JSONDict], entity: str
) -> ApiResponse:
    start, limit = _int(query, "offset", 0) or 0, _size(query, "limit")
    items = records[start : start + limit]
    body = {"hits": items, "has_more": start + limit < len(records), "total": len(records)}
    return json_response(200, body, entity)


def _with_headers(response: ApiResponse, headers: Mapping[str, str]) -> ApiResponse:
    return ApiResponse(
        response.status, response.body, {**response.headers, **headers}, entity=response.entity
    )


_STYLE_HANDLERS = {
    "offset": _offset,
    "page": _page,
    "cursor": _cursor,
    "next": _next,
    "link": _link,
    "search": _search,
}
