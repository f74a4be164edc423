"""Close CRM connector: ``_skip``/``_limit`` pagination that neither skips nor repeats.

Entities: ``lead``, ``contact``, ``opportunity``, ``activity`` and the typed activities
``activity_call``/``_email``/``_note``/``_meeting``/``_sms`` (paths ``activity/call/``
...), the custom field lists ``custom_field_lead``/``_contact``/``_opportunity``/
``_activity``/``_shared`` and ``user``. Custom fields, users and contacts are always
fetched in full, even in an incremental job (their records are upserted like any
other). Incremental syncs filter and sort by ``date_updated`` on leads (the search
``query``) and opportunities (``date_updated__gte``), and by ``date_created`` on
activities (``date_created__gt``), so an incremental activity sync picks up new
activities only; a full sync is how edits to old ones are caught.

Every request sorts explicitly and ascending (``_order_by=date_created``, or the
incremental date field): Close repeats or drops records when paging without a sort, and
ascending order puts records created during the sync after our position instead of
shifting it.

**Data changing mid-sync: keyset by date, with an anchored overlap.** Each page re-reads
the record just before its offset. When that record is still there, the page joins the
previous one exactly. When it is not, records before our offset were deleted (or moved
later by an update) and the offsets shifted: instead of guessing by how much, the fetch
restarts from the date of the last record it handed out, ``date >= last`` at offset 0,
dropping the ids it already handed out at exactly that date (kept in
``FetchState.metadata``). The same date window takes over when the next ``_skip`` would
pass Close's ``_skip`` cap, so deep pagination and resumes need no special case: the
window and the offset inside it are the checkpoint.

**A ``_skip`` cap nobody told us about.** ``skip_cap`` is a hint: when Close answers a
400 saying the ``_skip`` is too large, the walk learns the cap (the number in the
message, else one below the refused ``_skip``), keeps it in the position (so the
entity's next windows and resumes respect it) and goes on at once with a date window at
the current position. **A filter the server ignores**: every record must sort at or
after the lower date bound sent (a window or the incremental ``since``); one before it
is a :class:`~statesync.errors.NoProgressError` naming the request, instead of a window
walk that reads the list from its start forever.

The guarantee: every record that exists from the start of the sync to its end arrives,
and none is handed out twice, except a record whose sort date changes during the sync
(an update in a ``date_updated`` sync), which arrives again in its newer version; the
destination upserts by id, so it lands once either way. Records created or deleted
during the sync may or may not arrive. This rests on Close's dates being immutable
(``date_created``) or only moving forward (``date_updated``), and on ties between equal
dates being broken consistently (the emulator breaks them by id).

Rate limits: a 429 becomes :class:`~statesync.errors.RateLimitedError` whose
``retry_after`` is the larger of ``Retry-After`` and the ``RateLimit`` header's
``reset``. Every answer's ``RateLimit`` header goes to the engine as the page's
:class:`~statesync.RateInfo`; the account's rate budget paces the next requests by it
(waiting for ``reset`` when nothing remains) instead of spending a request on a 429.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs
import httpx

from statesync._models import FetchState, Page, PageRequest, RateInfo, Record, SyncMode
from statesync._ratelimit import rate_info_from_headers
from statesync.connector import BaseConnector
from statesync.connectors._close_endpoints import (
    CREATED,
    DEFAULT_ENTITIES,
    ENDPOINTS,
    UPDATED,
    Endpoint,
    endpoint,
)
from statesync.connectors._close_http import error_from, parse_rate_limit, read_list, retry_delay
from statesync.connectors._close_paging import MAX_LIMIT, Plan, Position, absorb, parse_date, plan
from statesync.connectors._http_client import default_client
from statesync.connectors._http_errors import map_http_error
from statesync.errors import BadRequestError, MalformedResponseError, NoProgressError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_ENTITIES",
    "ENDPOINTS",
    "MAX_PAGE_SIZE",
    "CloseConnector",
    "Endpoint",
    "parse_rate_limit",
    "retry_delay",
]

DEFAULT_BASE_URL = "https://api.close.com/api/v1"
MAX_PAGE_SIZE = MAX_LIMIT
DEFAULT_SKIP_CAP = 250_000


class CloseConnector(BaseConnector):
    """Lists Close objects page by page over httpx; the engine does the retries.

    ``fields`` optionally narrows what is fetched per entity (Close's ``_fields``); the
    connector always adds ``id``, ``date_created`` and ``date_updated``, which paging
    needs. A ``client`` passed in is used as is and left open by :meth:`aclose`.
    """

    name = "close"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        entities: Sequence[str] = DEFAULT_ENTITIES,
        skip_cap: int = DEFAULT_SKIP_CAP,
        fields: Mapping[str, Sequence[str]] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
    ) -> None:
        for entity in (*entities, *(fields or {})):
            endpoint(entity)  # fail at construction, not on the first page
        self._entities = tuple(entities)
        self._fields = {e: tuple(f) for e, f in (fields or {}).items()}
        self._account = "close:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]
        # The header made once: httpx's per-request auth flow and params merging cost
        # over a third of a page's client CPU (bench/bench_sync.py).
        basic = base64.b64encode(f"{api_key}:".encode()).decode()
        self._headers = {"Authorization": f"Basic {basic}"}
        self._base = base_url.rstrip("/")
        self._path = urlsplit(self._base).path
        self._skip_cap = skip_cap
        self._owns_client = client is None
        self._client = client if client is not None else default_client(timeout)

    @property
    def account(self) -> str:
        return self._account

    def entities(self) -> Sequence[str]:
        return self._entities

    async def fetch_page(self, request: PageRequest) -> Page:
        ep = endpoint(request.entity)
        key = ep.sort_key(request.mode)
        processed = request.state.total_processed
        page_size = min(request.page_size, MAX_PAGE_SIZE)
        step = plan(Position.of(request.state), processed, page_size, self._skip_cap)
        planned = bool(request.state.metadata.get(_PLANNED))
        try:
            response, described = await self._list(ep, key, step, request)
        except BadRequestError as exc:
            cap = learned_cap(exc, step.skip)
            if cap is not None and planned:
                # Settles as "does not join on": the checkpoint's own request learns.
                return Page((), has_more=True, metadata={_PLANNED: True, _RAW_TOTAL: None})
            if cap is None or step.position.last is None:
                raise
            # Past a cap nobody told us about: a date window at the current position.
            position = attrs.evolve(step.position.reopened(processed), cap=cap)
            step = Plan(position, 0, page_size)
            response, described = await self._list(ep, key, step, request)
        body = read_list(response, described, tuple(dict.fromkeys(("id", CREATED, key))))
        _check_lower_bound(body.items, key, self._lower(ep, key, step, request), described)
        rate = rate_info_from_headers(response.headers)
        if planned:
            # A planned page: its records are judged against the checkpoint in settle().
            return Page(
                records=_records(body.items, ep, described),
                has_more=body.has_more,
                next_offset=step.skip + len(body.items),
                metadata={_PLANNED: True, _RAW_TOTAL: body.total},
                rate=rate,
                request=described,
            )
        return _absorbed(
            step, body.items, body.has_more, body.total, ep, key, processed, rate, described
        )

    async def _list(
        self, ep: Endpoint, key: str, step: Plan, request: PageRequest
    ) -> tuple[httpx.Response, str]:
        params = self._params(ep, key, step, request)
        described = f"GET {self._path}/{ep.path} ({_show(params)})"
        return await self._get(ep.path, params, described), described

    @staticmethod
    def _lower(ep: Endpoint, key: str, step: Plan, request: PageRequest) -> str | None:
        return step.position.window or _since(ep, key, request)

    def plan_pages(self, request: PageRequest, count: int) -> Sequence[PageRequest]:
        """The offsets of the next pages when each comes back full.

        Nothing is planned past a page that would open a date window (the ``_skip`` cap):
        that page is fetched plainly once the checkpoint reaches it.
        """
        page_size = min(request.page_size, MAX_PAGE_SIZE)
        position = Position.of(request.state)
        processed = request.state.total_processed
        step = plan(position, processed, page_size, self._skip_cap)
        planned: list[PageRequest] = []
        while len(planned) < count and step.position == position:
            position = attrs.evolve(position, offset=step.skip + step.limit)
            processed += step.limit - (1 if step.overlaps else 0)
            step = plan(position, processed, page_size, self._skip_cap)
            if step.position != position:
                break
            state = FetchState(
                offset=position.offset,
                total_processed=processed,
                metadata={**position.metadata(), _PLANNED: True},
            )
            planned.append(attrs.evolve(request, state=state))
        return planned

    def settle(self, planned: PageRequest, page: Page, actual: PageRequest) -> Page | None:
        """A planned page joins on only when it asked what the checkpoint asks and its
        first record (the re-read one) was handed out already; else offsets shifted."""
        if not (page.metadata or {}).get(_PLANNED):
            return super().settle(planned, page, actual)
        ep = endpoint(actual.entity)
        key = ep.sort_key(actual.mode)
        page_size = min(actual.page_size, MAX_PAGE_SIZE)
        processed = actual.state.total_processed
        step = plan(Position.of(actual.state), processed, page_size, self._skip_cap)
        asked = plan(Position.of(planned.state), processed, page_size, self._skip_cap)
        if (step.skip, step.limit, step.position.window) != (
            asked.skip,
            asked.limit,
            asked.position.window,
        ):
            return None
        items = [record.data for record in page.records]
        if step.overlaps and (not items or not step.position.is_seen(items[0], key)):
            return None
        raw_total = (page.metadata or {}).get(_RAW_TOTAL)
        total = raw_total if isinstance(raw_total, int) else None
        return _absorbed(step, items, page.has_more, total, ep, key, processed, page.rate)

    def _params(self, ep: Endpoint, key: str, step: Plan, request: PageRequest) -> dict[str, Any]:
        params: dict[str, Any] = {"_skip": step.skip, "_limit": step.limit, "_order_by": key}
        lower = self._lower(ep, key, step, request)
        if lower is not None:
            params.update(ep.lower_bound(key, lower))
        wanted = self._fields.get(ep.entity)
        if wanted:
            params["_fields"] = ",".join(dict.fromkeys((*wanted, "id", CREATED, UPDATED)))
        return params

    async def _get(self, path: str, params: Mapping[str, Any], described: str) -> httpx.Response:
        try:
            response = await self._client.get(
                f"{self._base}/{path}?{urlencode(params)}", headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise map_http_error(exc, request=described) from exc
        if not response.is_success:
            raise error_from(response, described)
        return response

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


_PLANNED = "planned"
"""Metadata key of a planned request and of its provisional page."""
_RAW_TOTAL = "raw_total"


def _absorbed(
    step: Plan,
    items: Sequence[Mapping[str, Any]],
    has_more: bool,
    total: int | None,
    ep: Endpoint,
    key: str,
    processed: int,
    rate: RateInfo | None,
    described: str | None = None,
) -> Page:
    """The page ``items`` make at ``step``: fresh records only, and the next position."""
    try:
        absorbed = absorb(step, items, has_more, key, processed, described)
    except ValueError as exc:
        raise MalformedResponseError(
            "a list item has a date that is not ISO-8601", request=described
        ) from exc
    return Page(
        records=_records(absorbed.fresh, ep, described),
        has_more=absorbed.has_more,
        next_offset=absorbed.position.offset,
        metadata=absorbed.position.metadata(),
        total=None if total is None else step.position.base + total,
        rate=rate,
        request=described,
    )


_SKIP_WORDS = re.compile(r"max|too (large|big|high|deep)|exceed|greater|limit", re.IGNORECASE)
_SKIP_NUMBER = re.compile(r"_skip\D{0,40}?(\d[\d,]*)")


def learned_cap(error: BadRequestError, skip: int) -> int | None:
    """The ``_skip`` cap a 400 reveals, or ``None`` when it is about something else.

    Close words it as "The maximum _skip for this resource is N..."; a number after
    ``_skip`` is taken when it is below the refused value, else one less than it.
    """
    text = error.message
    if error.status != 400 or skip <= 0 or "_skip" not in text or not _SKIP_WORDS.search(text):
        return None
    found = _SKIP_NUMBER.search(text)
    said = int(found.group(1).replace(",", "")) if found else None
    return said if said is not None and 0 <= said < skip else skip - 1


def _check_lower_bound(
    items: Sequence[Mapping[str, Any]], key: str, lower: str | None, described: str
) -> None:
    """Every record at or after the date bound sent: else the server ignored the filter
    (and a window walk would read the list from its start again and again)."""
    if lower is None:
        return
    try:
        bound = parse_date(lower)
        early = next((i for i in items if parse_date(i[key]) < bound), None)
    except (KeyError, ValueError):
        return  # read_list and the absorb step report malformed records
    if early is not None:
        raise NoProgressError(
            f"record {early['id']!r} has {key} {early[key]}, before the lower bound {lower} "
            "the request sent: the server ignored the date filter",
            request=described,
        )


def _records(
    items: Sequence[Mapping[str, Any]], ep: Endpoint, described: str | None
) -> tuple[Record, ...]:
    try:
        return tuple(_record(item, ep) for item in items)
    except ValueError as exc:
        raise MalformedResponseError(
            "a list item has a date that is not ISO-8601", request=described
        ) from exc


def _since(ep: Endpoint, key: str, request: PageRequest) -> str | None:
    """The incremental lower bound, when this sync filters by the watermark."""
    if request.mode is not SyncMode.INCREMENTAL or request.since is None:
        return None
    if ep.incremental != key:
        return None
    since = request.since if request.since.tzinfo else request.since.replace(tzinfo=UTC)
    return since.isoformat()


def _show(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _record(item: Mapping[str, Any], ep: Endpoint) -> Record:
    created = parse_date(item[CREATED])
    updated = item.get(UPDATED)
    # The watermark must be the field incremental syncs filter on: activities filter
    # by creation, so their update date must not raise the watermark.
    if ep.incremental == CREATED or not isinstance(updated, str):
        return Record(id=item["id"], data=item, created_at=created)
    return Record(id=item["id"], data=item, created_at=created, updated_at=parse_date(updated))
