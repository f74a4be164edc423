"""Stripe connector: cursor pagination with ``starting_after``, through the official SDK.

Any Stripe list endpoint works by name (``customers``, ``invoices``, ``charges``,
``subscriptions``, ``products``, ``payment_intents``…). Lists come newest first, so the
cursor is the id of the last record of a page. Incremental syncs filter with
``created[gte]``: Stripe has no "updated since" filter, so an incremental sync picks up
new records, and a full sync is how changes to old ones are caught.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from statesync._models import Page, PageRequest, Record, SyncMode
from statesync._ratelimit import rate_info_from_headers
from statesync.connector import BaseConnector, Partitioning
from statesync.errors import MalformedResponseError, MissingExtraError, translate

if TYPE_CHECKING:
    import stripe

DEFAULT_ENTITIES = ("customers", "invoices", "charges", "subscriptions", "products")
MAX_PAGE_SIZE = 100


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
        try:
            response = await self._client.raw_request_async(
                "get", f"/v1/{request.entity}", **params
            )
        except Exception as exc:
            raise translate(exc, request=described) from exc
        page = _parse(response.data, request, described)
        rate = rate_info_from_headers(getattr(response, "headers", None) or {})
        return page if rate is None else attrs.evolve(page, rate=rate)

    def _params(self, request: PageRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": min(request.page_size, MAX_PAGE_SIZE)}
        if request.state.cursor:
            params["starting_after"] = request.state.cursor
        created: dict[str, int] = {}
        if request.mode is SyncMode.INCREMENTAL and request.since is not None:
            created["gte"] = int(request.since.timestamp())
        window = request.window
        if window is not None and window.lower is not None:
            created["gte"] = max(window.lower, created.get("gte", window.lower))
        if window is not None and window.upper is not None:
            created["lt"] = window.upper
        if created:
            params["created"] = created
        return params

    async def aclose(self) -> None:
        http = getattr(self._client._requestor, "_client", None)
        closer = getattr(http, "close_async", None)
        if closer is not None:
            await closer()


def _describe(entity: str, params: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    return f"GET /v1/{entity} ({shown})"


def _parse(body: object, request: PageRequest, described: str) -> Page:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise MalformedResponseError("response has no 'data' list", request=described)
    has_more = body.get("has_more")
    if not isinstance(has_more, bool):
        raise MalformedResponseError("response has no boolean 'has_more'", request=described)
    records = tuple(_record(item, described) for item in body["data"])
    cursor = records[-1].id if records else request.state.cursor
    return Page(records=records, has_more=has_more and bool(records), next_cursor=cursor)


def _record(item: object, described: str) -> Record:
    if not isinstance(item, dict):
        raise MalformedResponseError("a list item is not an object", request=described)
    obj_id, created = item.get("id"), item.get("created")
    if not isinstance(obj_id, str) or not isinstance(created, int):
        raise MalformedResponseError(
            "a list item lacks a string 'id' or an integer 'created'", request=described
        )
    return Record(id=obj_id, data=item, created_at=datetime.fromtimestamp(created, UTC))
