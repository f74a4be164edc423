"""Any REST API, declared instead of programmed: :class:`RESTConnector` + :class:`RESTEntity`.

An entity says where its list is (``path``, ``method``, ``params``/``body``,
``headers``), how to read it (``records_path``, ``id_field``, ``created_field`` /
``updated_field`` in ``time_format``), how to page it (one paginator of
:mod:`statesync.connectors._rest_paging`, with ``page_size_param`` up to
``max_page_size``), how to filter an incremental sync (``since_param``) and, with
``window_lower_param`` / ``window_upper_param``, how to restrict a request to a
creation-time window, so the engine can walk concurrent windows and deep offsets as it
does for Stripe and Close. The same entities load from TOML (see
:func:`statesync.connectors._rest_config.rest_from_mapping`) with errors naming the file,
the key path and what was expected.

Secrets are never part of the configuration: :class:`RESTAuth` names the environment
variables holding them, and they are read once, when the connector is built.

Order: offset and page-number walks assume the list is ordered oldest first by
creation time (ask for it in ``params``, e.g. ``sort = "created"``). Offset walks are
anchored (:mod:`statesync.connectors._rest_anchor`): inserts and deletes while a sync
runs lose nothing. Page-number walks are not anchored: a record deleted behind the walk
shifts the pages and the first record of the next page can be missed; prefer offsets,
cursors or windows for lists that change during a sync.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import attrs
import httpx

from statesync._models import (
    JSON,
    FetchState,
    Page,
    PageRequest,
    Record,
    ResumableFetchOptions,
    SyncMode,
)
from statesync._ratelimit import rate_info_from_headers
from statesync.connector import BaseConnector, Partitioning
from statesync.connectors._http_client import default_client
from statesync.connectors._http_errors import map_http_error
from statesync.connectors._rest_anchor import Anchor, absorb, key, plan
from statesync.connectors._rest_config import (
    RESTConfigError,
    RESTSettings,
    load_rest_config,
    rest_from_mapping,
)
from statesync.connectors._rest_entity import RESTAuth, RESTEntity
from statesync.connectors._rest_http import (
    dig,
    error_for_answer,
    error_in_body,
    format_time,
    missing,
    parse_time,
)
from statesync.connectors._rest_paging import (
    PAGINATORS,
    Answer,
    Ask,
    CursorPaginator,
    LinkHeaderPaginator,
    NextURLPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
    Token,
)
from statesync.errors import ConfigurationError, MalformedResponseError

__all__ = [
    "PAGINATORS",
    "CursorPaginator",
    "LinkHeaderPaginator",
    "NextURLPaginator",
    "OffsetPaginator",
    "PageNumberPaginator",
    "Paginator",
    "RESTAuth",
    "RESTConfigError",
    "RESTConnector",
    "RESTEntity",
    "RESTSettings",
    "load_rest_config",
    "rest_from_mapping",
]


class RESTConnector(BaseConnector):
    """Lists REST endpoints page by page over httpx; the engine does the retries.

    ``entities`` maps entity names to :class:`RESTEntity`. ``env`` is where the
    :class:`RESTAuth` variables are read (default: ``os.environ``). A ``client`` passed
    in is used as is and left open by :meth:`aclose`.
    """

    name = "rest"

    def __init__(
        self,
        base_url: str,
        entities: Mapping[str, RESTEntity],
        *,
        auth: RESTAuth | None = None,
        headers: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        timeout: float = 60.0,
        name: str = "rest",
    ) -> None:
        if not entities:
            raise ConfigurationError("entities: expected at least one entity")
        self.name = name
        self._entities = dict(entities)
        self._base = base_url.rstrip("/")
        parts = urlsplit(self._base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"base_url: expected an http(s) URL, got {base_url!r}")
        self._origin = (parts.scheme, parts.netloc)
        self._creds = (auth or RESTAuth()).resolve(os.environ if env is None else env)
        self._headers = {**(headers or {}), **self._creds.headers}
        digest = hashlib.sha256(("\0".join((self._base, *self._creds.secrets))).encode())
        self._account = f"{name}:{digest.hexdigest()[:12]}"
        self._owns_client = client is None
        self._client = client if client is not None else default_client(timeout)

    @property
    def account(self) -> str:
        return self._account

    def entities(self) -> Sequence[str]:
        return tuple(self._entities)

    def entity(self, name: str) -> RESTEntity:
        try:
            return self._entities[name]
        except KeyError:
            raise ConfigurationError(
                f"unknown entity {name!r}; this connector has {', '.join(self._entities)}"
            ) from None

    def partitioning(self, entity: str) -> Partitioning | None:
        found = self._entities.get(entity)
        if found is None or not found.windowed:
            return None
        return Partitioning(newest_first=found.newest_first, lower=found.earliest)

    def initial_state(self, options: ResumableFetchOptions) -> FetchState:
        return (
            FetchState(offset=0)
            if isinstance(self.entity(options.entity).paginator, OffsetPaginator)
            else FetchState()
        )

    def plan_pages(self, request: PageRequest, count: int) -> Sequence[PageRequest]:
        """Page numbers and offsets are predictable (anchored ones are judged in
        :meth:`settle`); cursors and next-page URLs are not."""
        ent = self.entity(request.entity)
        pager, size = ent.paginator, min(request.page_size, ent.max_page_size)
        if isinstance(pager, PageNumberPaginator):
            page, size = pager.page_of(request.state, size)
            states = [
                attrs.evolve(request.state, metadata={"page": page + i, "size": size})
                for i in range(1, count + 1)
            ]
        elif isinstance(pager, OffsetPaginator) and not pager.anchored:
            start = request.state.offset or 0
            states = [
                attrs.evolve(request.state, offset=start + i * size) for i in range(1, count + 1)
            ]
        elif isinstance(pager, OffsetPaginator):
            states = self._planned_anchors(ent, pager, request.state, size, count)
        else:
            return ()
        return [attrs.evolve(request, state=s) for s in states]

    def _planned_anchors(
        self, ent: RESTEntity, pager: OffsetPaginator, state: FetchState, size: int, count: int
    ) -> list[FetchState]:
        """The offsets of the next pages when each comes back full; none past a page that
        would narrow the query (the cap), which is fetched once the checkpoint is there."""
        can_filter = ent.window_lower_param is not None
        anchor, processed = Anchor.of(state), state.total_processed
        step = plan(anchor, processed, size, ent.max_page_size, pager.max_offset, can_filter)
        out: list[FetchState] = []
        while len(out) < count and step.anchor == anchor:
            anchor = attrs.evolve(anchor, offset=step.skip + step.limit)
            processed += step.limit - (1 if step.overlaps else 0)
            step = plan(anchor, processed, size, ent.max_page_size, pager.max_offset, can_filter)
            if step.anchor != anchor:
                break
            meta = {**anchor.metadata(), _PLANNED: True}
            out.append(FetchState(offset=anchor.offset, total_processed=processed, metadata=meta))
        return out

    def settle(self, planned: PageRequest, page: Page, actual: PageRequest) -> Page | None:
        """A planned anchored page joins on only when it asked what the checkpoint asks
        and its first record (the re-read one) was handed out already."""
        ent = self.entity(actual.entity)
        pager = ent.paginator
        if not (page.metadata or {}).get(_PLANNED) or not isinstance(pager, OffsetPaginator):
            return super().settle(planned, page, actual)
        can_filter = ent.window_lower_param is not None
        size = min(actual.page_size, ent.max_page_size)
        processed = actual.state.total_processed
        args = (processed, size, ent.max_page_size, pager.max_offset, can_filter)
        step = plan(Anchor.of(actual.state), *args)
        asked = plan(Anchor.of(planned.state), *args)
        if (step.skip, step.limit, step.anchor.window) != (
            asked.skip,
            asked.limit,
            asked.anchor.window,
        ):
            return None
        keys = [key(r.created_at.timestamp() if r.created_at else 0.0, r.id) for r in page.records]
        absorbed = absorb(step, keys, processed, can_filter)
        if absorbed.shifted:
            return None  # offsets moved: the engine fetches the checkpoint's page itself
        raw = (page.metadata or {}).get(_RAW_TOTAL)
        return Page(
            records=tuple(page.records[i] for i in absorbed.fresh),
            has_more=page.has_more,
            next_offset=absorbed.anchor.offset,
            metadata=absorbed.anchor.metadata(),
            total=absorbed.anchor.base + raw if isinstance(raw, int) else None,
            rate=page.rate,
            request=page.request,
        )

    async def fetch_page(self, request: PageRequest) -> Page:
        ent = self.entity(request.entity)
        size = min(request.page_size, ent.max_page_size)
        pager = ent.paginator
        if isinstance(pager, OffsetPaginator):
            return await self._offset_page(ent, pager, request, size)
        if isinstance(pager, PageNumberPaginator):
            ask, size = pager.ask(request.state, size)
            answer, items = await self._send(ent, request, ask, size)
            token, total = pager.next(request.state, answer, size)
            return self._page(ent, items, token, total, answer, request)
        ask = pager.ask(request.state)
        answer, items = await self._send(ent, request, ask, size)
        if isinstance(pager, CursorPaginator):
            token, total = pager.next(request.state, answer)
            return self._page(ent, items, token, total, answer, request)
        token, target, total = pager.next(request.state, answer)
        cursor = None if target is None else self._follow(answer, target)
        return self._page(ent, items, attrs.evolve(token, cursor=cursor), total, answer, request)

    async def _offset_page(
        self, ent: RESTEntity, pager: OffsetPaginator, request: PageRequest, size: int
    ) -> Page:
        if not pager.anchored:
            skip = request.state.offset or 0
            answer, items = await self._send(ent, request, Ask({pager.offset_param: skip}), size)
            more, total = pager.has_more(answer, skip, size)
            token = Token(more, offset=skip + len(items))
            return self._page(ent, items, token, total, answer, request)
        can_filter = ent.window_lower_param is not None
        anchor = Anchor.of(request.state)
        processed = request.state.total_processed
        step = plan(anchor, processed, size, ent.max_page_size, pager.max_offset, can_filter)
        ask = Ask({pager.offset_param: step.skip})
        answer, items = await self._send(ent, request, ask, step.limit, lower=step.anchor.window)
        # Each record's creation time is parsed once: for its key here, then its Record.
        created = [_created(ent, item, answer.described) for item in items]
        pairs = zip(items, created, strict=True)
        keys = [key(when.timestamp(), str(item[ent.id_field])) for item, when in pairs]
        if request.state.metadata.get(_PLANNED):
            # A planned page: its records are judged against the checkpoint in settle().
            more, total = pager.has_more(answer, step.skip, step.limit)
            token = Token(
                more, offset=step.skip + len(items), metadata={_PLANNED: True, _RAW_TOTAL: total}
            )
            return self._page(ent, items, token, None, answer, request, created)
        absorbed = absorb(step, keys, processed, can_filter, answer.described)
        if absorbed.shifted:
            token = Token(True, offset=0, metadata=absorbed.anchor.metadata())
            return self._page(ent, [], token, None, answer, request)
        more, total = pager.has_more(answer, step.skip, step.limit)
        fresh = [items[i] for i in absorbed.fresh]
        token = Token(more, offset=absorbed.anchor.offset, metadata=absorbed.anchor.metadata())
        shown_total = None if total is None else absorbed.anchor.base + total
        times = [created[i] for i in absorbed.fresh]
        return self._page(ent, fresh, token, shown_total, answer, request, times)

    def _follow(self, answer: Answer, target: str) -> str:
        """A next URL, resolved; one on another origin would receive our credentials."""
        # A server may echo a query-string key into its links: never keep it in a state.
        url = _strip_query_secrets(urljoin(answer.url, target), self._creds.query)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise MalformedResponseError(
                f"the next page is on another origin ({parts.scheme}://{parts.netloc}); "
                "credentials are only sent to base_url's",
                request=answer.described,
            )
        return url

    async def _send(
        self,
        ent: RESTEntity,
        request: PageRequest,
        ask: Ask,
        limit: int,
        lower: int | None = None,
    ) -> tuple[Answer, list[Mapping[str, Any]]]:
        extra: dict[str, JSON] = {}
        if ask.url is None:
            extra.update(ask.params)
            if ent.page_size_param:
                extra[ent.page_size_param] = limit
        # Also over a next-page URL: the engine may have narrowed the window since.
        extra.update(self._filters(ent, request, lower))
        url = ask.url or f"{self._base}/{ent.path.lstrip('/')}"
        query: dict[str, Any] = {} if ask.url else dict(ent.params)
        body: dict[str, Any] | None = dict(ent.body) if ent.method == "POST" else None
        if ent.where == "body" and body is not None:
            body.update(extra)
        else:
            query.update(extra)
        described = f"{ent.method} {urlsplit(url).path} ({_show({**query, **(body or {})})})"
        query.update(self._creds.query)
        target = httpx.URL(url)
        if query:
            # httpx replaces a URL's query with params=; a next-page URL's must be kept.
            target = target.copy_merge_params(query)
        try:
            response = await self._client.request(
                ent.method,
                target,
                json=body,
                headers={**self._headers, **ent.headers},
                auth=self._creds.auth if self._creds.auth else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise map_http_error(exc, request=described) from exc
        if not response.is_success:
            raise error_for_answer(response, described, ent.error_path)
        return self._read(ent, response, described)

    def _read(
        self, ent: RESTEntity, response: httpx.Response, described: str
    ) -> tuple[Answer, list[Mapping[str, Any]]]:
        try:
            body = response.json()
        except ValueError:
            raise MalformedResponseError("the answer is not JSON", request=described) from None
        if ent.error_path is not None:
            error = error_in_body(
                body,
                ent.error_path,
                ent.error_code_path,
                ent.error_kinds,
                described,
                response.headers,
            )
            if error is not None:
                raise error
        items = dig(body, ent.records_path)
        where = repr(ent.records_path) if ent.records_path else "the body"
        if missing(items) or not isinstance(items, list):
            raise MalformedResponseError(f"{where} is not a list of records", request=described)
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get(ent.id_field), str | int):
                raise MalformedResponseError(
                    f"a record in {where} is not an object with {ent.id_field!r}",
                    request=described,
                )
        answer = Answer(body, response.headers, len(items), str(response.url), described)
        answer = attrs.evolve(
            answer, url=_strip_query_secrets(str(response.url), self._creds.query)
        )
        return answer, items

    def _filters(self, ent: RESTEntity, request: PageRequest, lower: int | None) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        if ent.since_param and request.mode is SyncMode.INCREMENTAL and request.since:
            since = request.since
            if not ent.since_inclusive:
                since -= (
                    timedelta(milliseconds=1)
                    if ent.since_format == "epoch_ms"
                    else timedelta(seconds=1)
                )
            out[ent.since_param] = format_time(since, ent.since_format)
        window = request.window
        lows = [v for v in (lower, window.lower if window else None) if v is not None]
        if ent.window_lower_param and lows:
            out[ent.window_lower_param] = _bound(max(lows), ent.window_format)
        if ent.window_upper_param and window is not None and window.upper is not None:
            upper = window.upper - 1 if ent.window_upper_inclusive else window.upper
            out[ent.window_upper_param] = _bound(upper, ent.window_format)
        return out

    def _page(
        self,
        ent: RESTEntity,
        items: Sequence[Mapping[str, Any]],
        token: Token,
        total: int | None,
        answer: Answer,
        request: PageRequest,
        created: Sequence[datetime] | None = None,
    ) -> Page:
        """``items`` as the page; ``created``: their creation times, when parsed already."""
        described = answer.described
        if created is None:
            records = tuple(_record(ent, item, described) for item in items)
        else:
            pairs = zip(items, created, strict=True)
            records = tuple(_record(ent, item, described, when) for item, when in pairs)
        return Page(
            records=records,
            has_more=token.has_more,
            next_offset=token.offset,
            next_cursor=token.cursor,
            metadata=token.metadata,
            total=total,
            rate=rate_info_from_headers(answer.headers),
            request=answer.described,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


_PLANNED = "planned"
"""Metadata key of a planned request and of its provisional page."""
_RAW_TOTAL = "raw_total"


def _bound(seconds: int, fmt: str) -> str | int:
    return format_time(datetime.fromtimestamp(seconds, UTC), fmt)


def _strip_query_secrets(url: str, secret_query: Mapping[str, str]) -> str:
    if not secret_query:
        return url
    parsed = httpx.URL(url)
    params = parsed.params
    for name in secret_query:
        params = params.remove(name)
    return str(parsed.copy_with(params=params))


def _timestamp(
    ent: RESTEntity, item: Mapping[str, Any], name: str | None, described: str
) -> datetime | None:
    if name is None:
        return None
    value = dig(item, name)
    if missing(value):
        return None
    try:
        return parse_time(value, ent.time_format)
    except (ValueError, OverflowError, OSError) as exc:
        raise MalformedResponseError(
            f"record field {name!r} is not {ent.time_format}: {exc}", request=described
        ) from None


def _created(ent: RESTEntity, item: Mapping[str, Any], described: str) -> datetime:
    created = _timestamp(ent, item, ent.created_field, described)
    if created is None:
        raise MalformedResponseError(
            f"a record has no {ent.created_field!r}, which anchors the offset walk",
            request=described,
        )
    return created


def _record(
    ent: RESTEntity, item: Mapping[str, Any], described: str, created: datetime | None = None
) -> Record:
    """The record of ``item``; ``created``: its creation time, when parsed already."""
    return Record(
        id=str(item[ent.id_field]),
        data=item,
        created_at=created or _timestamp(ent, item, ent.created_field, described),
        updated_at=_timestamp(ent, item, ent.updated_field, described),
    )


def _show(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())
