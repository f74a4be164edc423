"""Stripe connector: cursor pagination with ``starting_after``, through the official SDK.

Any Stripe list endpoint works by name (``customers``, ``invoices``, ``charges``,
``subscriptions``, ``products``, ``payment_intents``…). Lists come newest first, so the
cursor is the id of the last record of a page. Incremental syncs filter with
``created[gte]``: Stripe has no "updated since" filter, so an incremental sync picks up
new records, and a full sync is how changes to old ones are caught.

**A cursor that vanishes.** Stripe answers 400 ``resource_missing`` (param
``starting_after``) when the record used as the cursor was deleted while the sync ran.
So the checkpoint keeps, next to the cursor, the cursor record's ``created`` second and
the ids already handed out at that second (``FetchState.metadata``, at most
:data:`MAX_TIED_IDS`). On that error the page is asked again without the cursor, with
``created[lte]`` at that second (lists come newest first, so that is where the walk
stood), and the ids already handed out are dropped from it: every record that exists
from the sync's start to its end arrives once, windows included. A checkpoint without
that metadata (taken by an older version) still fails as a bad request.

**Filters the server ignores.** Every record of a page is checked against the
``created`` bounds the request sent; one outside them is a
:class:`~statesync.errors.NoProgressError` naming the request, not a silent walk over
the whole list.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from statesync._models import JSON, FetchState, Page, PageRequest, Record, SyncMode
from statesync._ratelimit import rate_info_from_headers
from statesync.connector import BaseConnector, Partitioning
from statesync.errors import (
    BadRequestError,
    MalformedResponseError,
    MissingExtraError,
    NoProgressError,
)

if TYPE_CHECKING:
    import stripe

DEFAULT_ENTITIES = ("customers", "invoices", "charges", "subscriptions", "products")
MAX_PAGE_SIZE = 100
MAX_TIED_IDS = 1000
"""Ids handed out at the cursor's second kept in the checkpoint; past it (a thousand
records created in one second) a re-positioned page may repeat some, upserted once."""
CREATED_KEY, IDS_KEY = "cursor_created", "cursor_ids"


def _import_stripe() -> Any:
    try:
        import stripe
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError("the Stripe connector", "stripe", "stripe") from exc
    return stripe


class StripeConnector(BaseConnector):
    """Lists Stripe objects page by page; the SDK does the HTTP, the engine the retries."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        entities: Sequence[str] = DEFAULT_ENTITIES,
        timeout: float = 60.0,
        client: stripe.StripeClient | None = None,
    ) -> None:
        sdk = _import_stripe()
        self._entities = tuple(entities)
        self._account = "stripe:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]
        if client is None:
            client = sdk.StripeClient(
                api_key,
                base_addresses={"api": base_url} if base_url else None,
                # Retries are the engine's: it counts them, persists them and waits.
                max_network_retries=0,
                http_client=sdk.HTTPXClient(timeout=timeout),
            )
        self._client: Any = client

    @property
    def account(self) -> str:
        return self._account

    def entities(self) -> Sequence[str]:
        return self._entities

    def partitioning(self, entity: str) -> Partitioning:
        """Every list filters by ``created``: windows walk newest first, each with its cursor."""
        return Partitioning(newest_first=True)

    async def fetch_page(self, request: PageRequest) -> Page:
        params = self._params(request)
        described = _describe(request.entity, params)
        response = await self._get(request.entity, params, described)
        if response is _VANISHED:
            return await self._reposition(request, described)
        return _with_rate(_parse(response.data, request, params, described), response)

    async def _reposition(self, request: PageRequest, failed: str) -> Page:
        """The page after a deleted cursor record: from its second, minus what was seen."""
        anchor = _Anchor.of(request.state)
        if anchor is None:
            raise BadRequestError(
                f"the cursor record {request.state.cursor!r} no longer exists and the "
                "checkpoint does not say where it stood (no created time): start the "
                "entity again",
                request=failed,
            )
        params = self._params(request, before=anchor.created)
        described = _describe(request.entity, params)
        # No starting_after in this request, so it cannot come back vanished.
        response = await self._get(request.entity, params, described)
        page = _parse(response.data, request, params, described, skip=frozenset(anchor.ids))
        return _with_rate(page, response)

    async def _get(self, entity: str, params: Mapping[str, Any], described: str) -> Any:
        """The SDK's response, or :data:`_VANISHED` when the cursor record is gone."""
        try:
            response = await self._client.raw_request_async("get", f"/v1/{entity}", **params)
        except Exception as exc:
            if "starting_after" in params and _is_vanished_cursor(exc):
                return _VANISHED
            from statesync.connectors._stripe_errors import (
                map_stripe_error,  # the SDK is there: it raised
            )

            raise map_stripe_error(exc, request=described) from exc
        return response

    def _params(self, request: PageRequest, *, before: int | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": min(request.page_size, MAX_PAGE_SIZE)}
        if request.state.cursor and before is None:
            params["starting_after"] = request.state.cursor
        created: dict[str, int] = {}
        if request.mode is SyncMode.INCREMENTAL and request.since is not None:
            created["gte"] = int(request.since.timestamp())
        window = request.window
        if window is not None and window.lower is not None:
            created["gte"] = max(window.lower, created.get("gte", window.lower))
        if window is not None and window.upper is not None:
            created["lt"] = window.upper
        if before is not None:
            # Where the vanished cursor stood: its second and everything older.
            created["lte"] = before
            if created.get("lt", before + 1) > before:
                created.pop("lt", None)
        if created:
            params["created"] = created
        return params

    async def aclose(self) -> None:
        http = getattr(self._client._requestor, "_client", None)
        closer = getattr(http, "close_async", None)
        if closer is not None:
            await closer()


def _with_rate(page: Page, response: Any) -> Page:
    """``page`` with what the answer's headers said about the account's rate limit."""
    rate = rate_info_from_headers(getattr(response, "headers", None) or {})
    return page if rate is None else attrs.evolve(page, rate=rate)


def _describe(entity: str, params: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"GET /v1/{entity} ({shown})"


_VANISHED = object()
"""What :meth:`StripeConnector._get` answers when Stripe says the cursor record is gone."""


def _is_vanished_cursor(exc: BaseException) -> bool:
    return (
        getattr(exc, "code", None) == "resource_missing"
        and getattr(exc, "param", None) == "starting_after"
    )


@frozen
class _Anchor:
    """The cursor record's ``created`` second and the ids handed out at that second."""

    created: int
    ids: tuple[str, ...]

    @classmethod
    def of(cls, state: FetchState) -> _Anchor | None:
        created = state.metadata.get(CREATED_KEY)
        if not isinstance(created, int) or isinstance(created, bool):
            return None
        return cls(created, tuple(str(i) for i in state.metadata.get(IDS_KEY) or ()))

    def after(self, records: Sequence[Record]) -> _Anchor:
        """The anchor once ``records`` (a page, newest first) have been handed out."""
        created, ids = self.created, list(self.ids)
        for record in records:
            second = _second(record)
            if second != created:
                created, ids = second, []
            if record.id not in ids:
                ids.append(record.id)
        return _Anchor(created, tuple(ids[-MAX_TIED_IDS:]))

    def metadata(self) -> dict[str, JSON]:
        return {CREATED_KEY: self.created, IDS_KEY: list(self.ids)}


def _second(record: Record) -> int:
    assert record.created_at is not None  # every Stripe record has one (_record)
    return int(record.created_at.timestamp())


def _parse(
    body: object,
    request: PageRequest,
    params: Mapping[str, Any],
    described: str,
    skip: frozenset[str] = frozenset(),
) -> Page:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise MalformedResponseError("response has no 'data' list", request=described)
    has_more = body.get("has_more")
    if not isinstance(has_more, bool):
        raise MalformedResponseError("response has no boolean 'has_more'", request=described)
    records = tuple(_record(item, described) for item in body["data"])
    _check_bounds(records, params.get("created") or {}, described)
    cursor = records[-1].id if records else request.state.cursor
    before = _Anchor.of(request.state) or _Anchor(0, ())
    metadata = before.after(records).metadata() if records else None
    return Page(
        records=tuple(r for r in records if r.id not in skip),
        has_more=has_more and bool(records),
        next_cursor=cursor,
        metadata=metadata,
        request=described,
    )


_OPS: Mapping[str, Callable[[int, int], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}


def _check_bounds(records: Sequence[Record], bounds: Mapping[str, int], described: str) -> None:
    """Each record within the ``created`` filter sent: else the server ignored it."""
    for record in records:
        second = _second(record)
        if not all(_OPS[op](second, value) for op, value in bounds.items()):
            shown = ", ".join(f"created[{op}]={v}" for op, v in bounds.items())
            raise NoProgressError(
                f"record {record.id!r} (created {second}) is outside the filter sent "
                f"({shown}): the server ignored it",
                request=described,
            )


def _record(item: object, described: str) -> Record:
    if not isinstance(item, dict):
        raise MalformedResponseError("a list item is not an object", request=described)
    obj_id, created = item.get("id"), item.get("created")
    if not isinstance(obj_id, str) or not isinstance(created, int):
        raise MalformedResponseError(
            "a list item lacks a string 'id' or an integer 'created'", request=described
        )
    return Record(id=obj_id, data=item, created_at=datetime.fromtimestamp(created, UTC))
