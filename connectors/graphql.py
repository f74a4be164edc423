"""GraphQL connector: any paginated query, through gql's httpx transport.

Per entity the user gives a query document and the path to the list inside its result;
the connector reads the document's AST when it is configured and decides how it
paginates (Relay ``first``/``after`` with ``pageInfo``, or offset ``limit``/``offset``,
``first``/``skip``, ``take``/``skip``), so a query it cannot page through fails before
any request. Incremental syncs feed ``PageRequest.since`` to a ``$since`` variable (or
the one named by ``since_variable``) when the query declares it; without one an
incremental sync reads everything, which is correct, only slower.

A Relay query whose connection also takes a creation-time window can be walked as
concurrent windows, each with its own cursor, as Stripe's lists are (see
:meth:`GraphQLConnector.partitioning`): name the two variables in ``window_variables``
(inclusive lower, exclusive upper bound) and the record's ``created_field``. The list
must come in a stable order inside a window: oldest first by creation time (ties in
any fixed order, e.g. by id) unless ``newest_first`` says otherwise, and a cursor must
stay valid when its window's bounds narrow (a dense window splits under it).

>>> connector = GraphQLConnector(  # doctest: +SKIP
...     "https://api.github.com/graphql",
...     headers={"Authorization": "Bearer ghp_…"},
...     entities={
...         "issues": GraphQLEntity(
...             query=ISSUES_QUERY,
...             path=("repository", "issues"),
...             updated_field="updatedAt",
...             variables={"owner": "python", "name": "cpython"},
...         ),
...         "tickets": GraphQLEntity(  # windows: `tickets(first: $first, after: $after,
...             query=TICKETS_QUERY,  # createdGte: $createdGte, createdLt: $createdLt)`
...             path=("workspace", "tickets"),
...             created_field="createdAt",
...             window_variables=("createdGte", "createdLt"),
...         ),
...     },
... )
"""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
from attrs import field, frozen

from statesync._frozen import EMPTY, frozen_mapping
from statesync._models import JSON, FetchState, Page, PageRequest, ResumableFetchOptions, SyncMode
from statesync._partitions import sent_bounds
from statesync._ratelimit import rate_info_from_headers, retry_after_from_headers
from statesync.connector import BaseConnector, Partitioning
from statesync.errors import (
    BadRequestError,
    ConfigurationError,
    ConnectorError,
    MalformedResponseError,
    RateLimitedError,
    error_for_status,
)

from ._anchored import Anchor, Ask, Ordering, absorb, ask, ask_ahead, plan_ahead, rewound
from ._graphql_page import STYLE_KEY, RecordFields, read_page
from ._graphql_style import GRAPHQL, PaginationStyle, QueryPlan, WindowVariables, analyze

with GRAPHQL.importing():
    from gql import GraphQLRequest
    from gql.transport.exceptions import TransportError
    from gql.transport.httpx import HTTPXAsyncTransport

    from statesync.connectors._graphql_errors import (  # imports gql
        error_from_graphql,
        map_gql_error,
        scrub,
    )

_SECRET_HEADER_WORDS = ("auth", "token", "key", "secret", "cookie", "session", "signature")


def _path(value: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(value.split(".")) if isinstance(value, str) else tuple(value)


def _names(value: Sequence[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


@frozen
class GraphQLEntity:
    """One entity: a query, where its list is in the result, and how to read records.

    ``path`` is a tuple of response keys (or a dotted string), e.g.
    ``("repository", "issues")``. ``variables`` are sent with every page; the
    pagination and since variables are the connector's.
    """

    query: str
    path: tuple[str, ...] = field(converter=_path)
    id_field: str = "id"
    updated_field: str | None = None
    created_field: str | None = None
    variables: Mapping[str, JSON] = field(default=EMPTY, converter=frozen_mapping)
    since_variable: str | None = None
    operation_name: str | None = None
    max_page_size: int = field(default=100, validator=attrs.validators.ge(1))
    """The API's page size cap: an offset list must never answer fewer than it was asked
    for before its end, since a short page is how the end is recognised."""
    window_variables: tuple[str, ...] | None = field(default=None, converter=_names)
    """The variables (lower, upper) that restrict a Relay connection to records created
    in ``[lower, upper)``, e.g. ``("createdGte", "createdLt")``: with them (and
    ``created_field``) the engine walks the entity as concurrent creation-time windows
    when ``ChunkPolicy.pages_in_flight > 1``. Declared as ``Int``/``Float`` they are sent as
    Unix seconds, otherwise as ISO 8601 date-times; an open side is sent as null."""
    newest_first: bool = False
    """The order the connection lists a window in: oldest first (ascending creation
    time, ties in a fixed order) by default, newest first when set."""
    order_field: str | None = None
    """Offset lists: the field the list is sorted by (selected on each record), ties in
    a fixed order, e.g. ``"createdAt"``. With it the walk is anchored: each page re-reads
    the record before its offset, so records inserted or deleted ahead of or behind the
    walk shift nothing out (see :mod:`statesync.connectors._anchored`). Required for an
    offset list unless ``anchored`` is false."""
    order_descending: bool = False
    """The list is sorted by ``order_field`` newest (largest) first."""
    anchored: bool = True
    """``False`` pages an offset list by plain offsets, without an order field: records
    deleted behind the walk then make as many others vanish from the sync unseen, and
    inserts behind it repeat records. Only for lists that do not change while synced."""


@frozen
class _Configured:
    entity: GraphQLEntity
    plan: QueryPlan
    fields: RecordFields
    ordering: Ordering | None = None
    """Set for an anchored offset list."""


@attrs.define
class _HttpProbe:
    """The HTTP status and headers of this task's request (GraphQL bodies hide them)."""

    status: int | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


# One probe per fetch_page call: a context variable keeps concurrent entities apart.
_PROBE: contextvars.ContextVar[_HttpProbe | None] = contextvars.ContextVar(
    "statesync_graphql_probe", default=None
)


async def _observe(response: httpx.Response) -> None:
    probe = _PROBE.get()
    if probe is not None:
        probe.status = response.status_code
        probe.headers = response.headers


class GraphQLConnector(BaseConnector):
    """Pages through GraphQL queries; gql does the HTTP, the engine the retries."""

    name = "graphql"

    def __init__(
        self,
        url: str,
        *,
        entities: Mapping[str, GraphQLEntity],
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        GRAPHQL.require()
        if not entities:
            raise ConfigurationError("the GraphQL connector needs at least one entity")
        self._configured = {name: _configure(name, e) for name, e in entities.items()}
        headers = dict(headers or {})
        self._secrets = _secrets(headers)
        # Any credential header counts (Authorization, X-Api-Key...), never in clear.
        credentials = "\n".join(v for k, v in sorted(headers.items()) if _is_secret(k))
        digest = hashlib.sha256(f"{url}\n{credentials}".encode()).hexdigest()[:12]
        self._account = f"graphql:{digest}"
        self._shown_url = urlsplit(url).path or "/"
        self._transport: Any = HTTPXAsyncTransport(
            url=url, headers=headers, timeout=timeout, event_hooks={"response": [_observe]}
        )
        self._connected = False

    @property
    def account(self) -> str:
        return self._account

    def entities(self) -> Sequence[str]:
        return tuple(self._configured)

    def style(self, entity: str) -> PaginationStyle:
        """The pagination style detected for ``entity``'s query."""
        return self._entity(entity).plan.style

    def partitioning(self, entity: str) -> Partitioning | None:
        """Creation-time windows for an entity configured with ``window_variables``.

        Each window is its own Relay walk with its own cursor; the list is assumed to
        come oldest first inside a window (``Partitioning(newest_first=False)``) unless
        the entity sets ``newest_first``.
        """
        configured = self._configured.get(entity)
        if configured is None or configured.plan.window is None:
            return None  # an unknown entity fails on its first request, as unwindowed
        return Partitioning(newest_first=configured.entity.newest_first)

    def initial_state(self, options: ResumableFetchOptions) -> FetchState:
        style = self._entity(options.entity).plan.style
        offset = 0 if style is PaginationStyle.OFFSET else None
        return FetchState(offset=offset, metadata={STYLE_KEY: style.value})

    def plan_pages(self, request: PageRequest, count: int) -> Sequence[PageRequest]:
        """Offset lists have predictable offsets; Relay cursors do not."""
        configured = self._entity(request.entity)
        if configured.plan.style is not PaginationStyle.OFFSET:
            return ()
        if configured.ordering is not None:
            return _plan_anchored(configured, request, count)
        size = min(request.page_size, configured.entity.max_page_size)
        start = request.state.offset or 0
        meta = {STYLE_KEY: configured.plan.style.value}
        return tuple(
            attrs.evolve(
                request,
                state=attrs.evolve(request.state, offset=start + i * size, metadata=meta),
            )
            for i in range(1, count + 1)
        )

    def settle(self, planned: PageRequest, page: Page, actual: PageRequest) -> Page | None:
        """An anchored planned page joins on only when it asked what the checkpoint asks
        and starts with a record handed out already; else offsets shifted under it."""
        configured = self._entity(actual.entity)
        if configured.ordering is None or not (page.metadata or {}).get(_PLANNED):
            return super().settle(planned, page, actual)
        anchor, asked = _ask(configured, actual)
        if asked != _ask(configured, planned)[1]:
            return None
        answer = _anchored_answer(configured, actual, anchor, asked, page)
        return None if answer.metadata and answer.metadata.get(_SHIFTED) else answer

    async def fetch_page(self, request: PageRequest) -> Page:
        configured = self._entity(request.entity)
        plan = configured.plan
        _check_resume(request, plan)
        size = min(request.page_size, configured.entity.max_page_size)
        if configured.ordering is not None:
            return await self._fetch_anchored(configured, request)
        variables = _variables(configured, request, size)
        shown = self._describe(plan, variables)
        probe = _HttpProbe()
        data = await self._execute(plan, variables, shown, probe)
        page = read_page(data, plan, configured.fields, request, size, shown)
        rate = rate_info_from_headers(probe.headers)
        return page if rate is None else attrs.evolve(page, rate=rate)

    async def _fetch_anchored(self, configured: _Configured, request: PageRequest) -> Page:
        plan = configured.plan
        anchor, asked = _ask(configured, request)
        variables = _variables(configured, request, asked.limit)
        variables[plan.pagination.position_variable] = asked.skip
        shown = self._describe(plan, variables)
        probe = _HttpProbe()
        data = await self._execute(plan, variables, shown, probe)
        raw = read_page(data, plan, configured.fields, request, asked.limit, shown)
        rate = rate_info_from_headers(probe.headers)
        page = attrs.evolve(
            raw, has_more=len(raw.records) >= asked.limit, request=shown, rate=rate or raw.rate
        )
        if request.state.metadata.get(_PLANNED):
            # Judged against the checkpoint in settle(), once the pages before it landed.
            return attrs.evolve(page, metadata={**(page.metadata or {}), _PLANNED: True})
        answer = _anchored_answer(configured, request, anchor, asked, page)
        return attrs.evolve(
            answer, metadata={k: v for k, v in (answer.metadata or {}).items() if k != _SHIFTED}
        )

    async def aclose(self) -> None:
        if self._connected:
            self._connected = False
            await self._transport.close()

    def _entity(self, entity: str) -> _Configured:
        try:
            return self._configured[entity]
        except KeyError:
            raise BadRequestError(
                f"unknown entity {entity!r}: this connector has {', '.join(self._configured)}"
            ) from None

    def _describe(self, plan: QueryPlan, variables: Mapping[str, Any]) -> str:
        # Only the pagination variables: configured ones may hold anything.
        pagination = plan.pagination
        names = [pagination.size_variable, pagination.position_variable]
        if plan.window is not None:
            names += [plan.window.lower, plan.window.upper]
        shown = ", ".join(f"{name}={variables.get(name)!r}" for name in names)
        return f"POST {self._shown_url} {plan.where} ({shown})"

    async def _execute(
        self, plan: QueryPlan, variables: dict[str, Any], shown: str, probe: _HttpProbe
    ) -> Any:
        token = _PROBE.set(probe)
        try:
            if not self._connected:
                self._connected = True
                await self._transport.connect()
            request = GraphQLRequest(
                plan.document, variable_values=variables, operation_name=plan.operation_name
            )
            result = await self._transport.execute(request)
        except TransportError as exc:  # everything gql's transport raises
            error = self._finish(map_gql_error(exc, request=shown), probe)
            # A cause that quotes a secret stays out of the chain (tracebacks print it).
            raise error from (None if self._quotes_secret(exc) else exc)
        finally:
            _PROBE.reset(token)
        if result.errors:
            # Errors in a 200 fail the page even when partial data came along.
            raise self._finish(error_from_graphql(result.errors, shown), probe)
        if result.data is None:
            raise MalformedResponseError("the answer has neither data nor errors", request=shown)
        return result.data

    def _finish(self, error: ConnectorError, probe: _HttpProbe) -> ConnectorError:
        return scrub(_refine(error, probe), self._secrets)

    def _quotes_secret(self, exc: BaseException) -> bool:
        return any(secret in str(exc) for secret in self._secrets)


def _configure(name: str, entity: GraphQLEntity) -> _Configured:
    fields = RecordFields(entity.id_field, entity.updated_field, entity.created_field)
    selected = (fields.id, fields.updated, fields.created, entity.order_field)
    try:
        plan = analyze(
            entity.query,
            entity.path,
            operation_name=entity.operation_name,
            since_variable=entity.since_variable,
            record_fields=list(dict.fromkeys(f for f in selected if f)),
            window_variables=_window_names(entity),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"GraphQL entity {name!r}: {exc}") from None
    _check_variables(name, entity, plan)
    return _Configured(entity, plan, fields, _ordering(name, entity, plan))


def _ordering(name: str, entity: GraphQLEntity, plan: QueryPlan) -> Ordering | None:
    """How an anchored offset list is sorted; refuses an offset list that cannot be."""
    if plan.style is not PaginationStyle.OFFSET or not entity.anchored:
        return None
    if entity.order_field is None:
        raise ConfigurationError(
            f"GraphQL entity {name!r}: the offset list at {plan.where} has no stable order "
            "to anchor its pages to, so records deleted behind the walk would make others "
            "vanish unseen: set order_field to the field the list is sorted by (select it "
            "on each record, e.g. order_field='createdAt', and order_descending=True if it "
            "lists newest first), or set anchored=False to page by plain offsets"
        )
    return Ordering(entity.order_field, entity.id_field, descending=entity.order_descending)


_PLANNED = "planned"
"""Metadata key of a planned request and of its provisional page."""
_SHIFTED = "shifted"
"""Metadata key of an answer that did not join on (only between settle and its caller)."""


def _ask(configured: _Configured, request: PageRequest) -> tuple[Anchor, Ask]:
    size = min(request.page_size, configured.entity.max_page_size)
    anchor = Anchor.of(request.state.offset, request.state.metadata)
    if request.state.metadata.get(_PLANNED):
        return anchor, ask_ahead(anchor.offset, size, configured.entity.max_page_size)
    return anchor, ask(anchor, size, configured.entity.max_page_size)


def _plan_anchored(
    configured: _Configured, request: PageRequest, count: int
) -> Sequence[PageRequest]:
    """The offsets of the next pages when each comes back full (each re-reads one)."""
    _, asked = _ask(configured, request)
    size = min(request.page_size, configured.entity.max_page_size)
    style = {STYLE_KEY: configured.plan.style.value, _PLANNED: True}
    return [
        attrs.evolve(request, state=FetchState(offset=offset, metadata=style))
        for offset in plan_ahead(asked, count, size, configured.entity.max_page_size)
    ]


def _anchored_answer(
    configured: _Configured, request: PageRequest, anchor: Anchor, asked: Ask, page: Page
) -> Page:
    """The records of ``page`` not handed out before, and the anchor after them."""
    assert configured.ordering is not None  # only anchored lists come here
    items = [record.data for record in page.records]
    absorbed = absorb(anchor, asked, items, page.has_more, configured.ordering, page.request)
    style = {STYLE_KEY: configured.plan.style.value}
    if absorbed.shifted:
        # Records before the offset vanished: step back until a page joins on again.
        size = min(request.page_size, configured.entity.max_page_size)
        back = rewound(anchor, size)
        return Page(
            (),
            has_more=True,
            next_offset=back.offset,
            metadata={**style, **back.metadata(), _SHIFTED: True},
            rate=page.rate,
            request=page.request,
        )
    fresh = {configured.ordering.record_id(item) for item in absorbed.fresh}
    return Page(
        tuple(r for r in page.records if r.id in fresh),
        has_more=absorbed.has_more,
        next_offset=absorbed.anchor.offset,
        metadata={**style, **absorbed.anchor.metadata()},
        rate=page.rate,
        request=page.request,
    )


def _window_names(entity: GraphQLEntity) -> tuple[str, str] | None:
    names = entity.window_variables
    if names is None:
        return None
    if len(names) != 2 or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(
            f"window_variables must name two variables, the lower (created >=) and the "
            f"upper (created <) bound, e.g. ('createdGte', 'createdLt'); got {names!r}"
        )
    if entity.created_field is None:
        raise ConfigurationError(
            "window_variables need created_field: windows split at the creation times "
            "read from the records"
        )
    return names[0], names[1]


def _check_variables(name: str, entity: GraphQLEntity, plan: QueryPlan) -> None:
    ours = {plan.pagination.size_variable, plan.pagination.position_variable}
    ours |= {plan.since_variable} if plan.since_variable else set()
    ours |= {plan.window.lower, plan.window.upper} if plan.window else set()
    given = set(entity.variables)
    problems = [
        *(f"${v} is set by the connector (pagination/since/window)" for v in sorted(given & ours)),
        *(f"${v} is not declared by the query" for v in sorted(given - plan.declared)),
        *(f"${v} is required but has no value" for v in sorted(plan.required - given - ours)),
    ]
    if problems:
        raise ConfigurationError(f"GraphQL entity {name!r} variables: {'; '.join(problems)}")


def _variables(configured: _Configured, request: PageRequest, size: int) -> dict[str, Any]:
    plan = configured.plan
    pagination = plan.pagination
    position: int | str | None = request.state.cursor
    if plan.style is PaginationStyle.OFFSET:
        position = request.state.offset or 0
    variables: dict[str, Any] = dict(configured.entity.variables)
    variables[pagination.size_variable] = size
    variables[pagination.position_variable] = position
    if plan.since_variable and request.mode is SyncMode.INCREMENTAL and request.since:
        # Left out otherwise, so a default declared in the query applies.
        variables[plan.since_variable] = request.since.isoformat()
    if plan.window is not None:
        lower, upper = sent_bounds(request)
        variables[plan.window.lower] = _bound_value(plan.window, plan.window.lower, lower)
        variables[plan.window.upper] = _bound_value(plan.window, plan.window.upper, upper)
    return variables


def _bound_value(window: WindowVariables, name: str, seconds: int | None) -> int | str | None:
    if seconds is None:
        return None
    if name in window.unix:
        return seconds
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _check_resume(request: PageRequest, plan: QueryPlan) -> None:
    taken_with = request.state.metadata.get(STYLE_KEY)
    if taken_with is not None and taken_with != plan.style.value:
        raise BadRequestError(
            f"the checkpoint was taken with {taken_with} pagination but the query of "
            f"{plan.where} now paginates by {plan.style.value}: start a new job, or restore "
            "the query the job began with"
        )


def _refine(error: ConnectorError, probe: _HttpProbe) -> ConnectorError:
    """Let the HTTP status correct a classification made from the body alone."""
    cls: type[ConnectorError] = type(error)
    status = probe.status
    if status is not None and status >= 400 and cls is not RateLimitedError:
        by_status = type(error_for_status(status, ""))
        # 429, 401/403 and 5xx say more than a body's codes; a plain 400 does not.
        if by_status is not BadRequestError:
            cls = by_status
    retry_after = error.retry_after
    if cls is RateLimitedError and retry_after is None:
        # GitHub answers an exhausted quota with a 200: the wait is in its headers.
        retry_after = retry_after_from_headers(probe.headers)
    return cls(
        error.message, request=error.request, status=status or error.status, retry_after=retry_after
    )


def _is_secret(header: str) -> bool:
    return any(word in header.lower() for word in _SECRET_HEADER_WORDS)


def _secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Header values that must never appear in an error (and their bare credentials)."""
    found: list[str] = []
    for name, value in headers.items():
        if _is_secret(name):
            _, _, credential = value.partition(" ")
            found.extend(v for v in (value, credential.strip()) if len(v) >= 4)
    # Longest first, so a full "Bearer x" is replaced before its bare "x".
    return tuple(sorted(set(found), key=len, reverse=True))
