"""REST paginators: small values, token in (a ``FetchState``), token out (the next one).

Each paginator says what to add to a request for the state it is given (:meth:`ask`)
and, from the answer, where the walk goes next (:meth:`next`): an offset, a page number
(kept in ``metadata["page"]`` with the page size it was counted in), a cursor, or the
URL of the next page (kept in ``FetchState.cursor``). The end of the list is detected,
in this order, from a has-more flag in the body (``has_more_path``), a missing next
token, a total (in the body or a header), and a short or empty page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import frozen

from statesync._models import JSON, FetchState
from statesync.connectors._rest_http import dig, link_next, missing
from statesync.errors import MalformedResponseError


@frozen
class Answer:
    """What a paginator reads: the parsed body, the headers, the records, the URL."""

    body: Any
    headers: Mapping[str, str]
    count: int
    url: str
    described: str


@frozen
class Ask:
    """What a paginator adds to the request: parameters, or a whole URL to fetch."""

    params: Mapping[str, JSON]
    url: str | None = None


@frozen
class Token:
    """Where the walk goes after a page (the token out)."""

    has_more: bool
    offset: int | None = None
    cursor: str | None = None
    metadata: Mapping[str, JSON] | None = None


def _flag(answer: Answer, path: str | None) -> bool | None:
    if path is None:
        return None
    value = dig(answer.body, path)
    if missing(value):
        return False  # APIs drop the flag on the last page as often as they set false
    if not isinstance(value, bool):
        raise MalformedResponseError(
            f"{path!r} in the body is {value!r}, not true/false", request=answer.described
        )
    return value


def _total(answer: Answer, path: str | None, header: str | None) -> int | None:
    raw: Any = None
    if path is not None:
        raw = dig(answer.body, path)
        raw = None if missing(raw) else raw
    if raw is None and header is not None:
        lowered = {k.lower(): v for k, v in answer.headers.items()}
        raw = lowered.get(header.lower())
    if raw is None:
        return None
    try:
        total = int(raw)
    except (TypeError, ValueError):
        shown = path or header
        raise MalformedResponseError(
            f"the total {shown!r} is {raw!r}, not an integer", request=answer.described
        ) from None
    if total < 0 or isinstance(raw, bool):
        raise MalformedResponseError(f"the total is {raw!r}", request=answer.described)
    return total


@frozen
class OffsetPaginator:
    """``offset`` / ``limit`` parameters; the offset is absolute in the query's list.

    ``total_path`` / ``total_header``: where the API states the number of records of the
    query (optional). ``max_offset``: the largest offset the API accepts; past it the walk
    narrows the query by creation time (needs the entity's ``window_lower_param``).
    ``anchored``: re-read the record before each offset to detect shifts (needs
    ``created_field``); ``false`` is the documented opt-out for lists with no stable order.
    """

    type: ClassVar[str] = "offset"
    offset_param: str = "offset"
    total_path: str | None = None
    total_header: str | None = None
    has_more_path: str | None = None
    max_offset: int | None = None
    anchored: bool = True

    def has_more(self, answer: Answer, skip: int, limit: int) -> tuple[bool, int | None]:
        """Whether records follow this page, and the query's total when stated."""
        total = _total(answer, self.total_path, self.total_header)
        flag = _flag(answer, self.has_more_path)
        if answer.count == 0:
            return False, total
        if flag is not None:
            return flag, total
        if total is not None:
            return skip + answer.count < total, total
        return answer.count >= limit, total


@frozen
class PageNumberPaginator:
    """``page`` / page size parameters, pages counted from ``first_page``.

    The end comes from ``has_more_path``, ``total_pages_path``, the record total
    (``total_path`` / ``total_header``) or a short page.
    """

    type: ClassVar[str] = "page_number"
    page_param: str = "page"
    first_page: int = 1
    total_path: str | None = None
    total_header: str | None = None
    total_pages_path: str | None = None
    has_more_path: str | None = None

    def page_of(self, state: FetchState, size: int) -> tuple[int, int]:
        page = state.metadata.get("page")
        counted = state.metadata.get("size")
        return (
            int(page) if page is not None else self.first_page,
            int(counted) if counted is not None else size,
        )

    def ask(self, state: FetchState, size: int) -> tuple[Ask, int]:
        page, size = self.page_of(state, size)
        return Ask({self.page_param: page}), size

    def next(self, state: FetchState, answer: Answer, size: int) -> tuple[Token, int | None]:
        page, size = self.page_of(state, size)
        total = _total(answer, self.total_path, self.total_header)
        flag = _flag(answer, self.has_more_path)
        pages = _total(answer, self.total_pages_path, None)
        if answer.count == 0:
            more = False
        elif flag is not None:
            more = flag
        elif pages is not None:
            more = page - self.first_page + 1 < pages
        elif total is not None:
            more = (page - self.first_page + 1) * size < total
        else:
            more = answer.count >= size
        return Token(more, metadata={"page": page + 1, "size": size}), total


@frozen
class CursorPaginator:
    """The next cursor read from the body at ``cursor_path`` and sent as ``cursor_param``."""

    cursor_path: str
    type: ClassVar[str] = "cursor"
    cursor_param: str = "cursor"
    has_more_path: str | None = None
    total_path: str | None = None

    def ask(self, state: FetchState) -> Ask:
        return Ask({self.cursor_param: state.cursor} if state.cursor else {})

    def next(self, state: FetchState, answer: Answer) -> tuple[Token, int | None]:
        raw = dig(answer.body, self.cursor_path)
        token = None if missing(raw) or raw == "" else str(raw)
        flag = _flag(answer, self.has_more_path)
        more = token is not None and (flag is None or flag)
        if more and token == state.cursor:
            raise MalformedResponseError(
                f"the API answered the cursor it was sent ({self.cursor_path!r}): no progress",
                request=answer.described,
            )
        return Token(more, cursor=token if more else None), _total(answer, self.total_path, None)


@frozen
class NextURLPaginator:
    """The next page's URL read from the body at ``next_url_path`` (relative ones too)."""

    next_url_path: str
    type: ClassVar[str] = "next_url"
    has_more_path: str | None = None
    total_path: str | None = None

    def ask(self, state: FetchState) -> Ask:
        return Ask({}, url=state.cursor)

    def next(self, state: FetchState, answer: Answer) -> tuple[Token, str | None, int | None]:
        raw = dig(answer.body, self.next_url_path)
        target = None if missing(raw) or raw == "" else str(raw)
        flag = _flag(answer, self.has_more_path)
        more = target is not None and (flag is None or flag)
        total = _total(answer, self.total_path, None)
        return Token(more), (target if more else None), total


@frozen
class LinkHeaderPaginator:
    """The next page's URL from RFC 8288 ``Link: <url>; rel="next"`` (GitHub's style)."""

    type: ClassVar[str] = "link_header"
    total_path: str | None = None

    def ask(self, state: FetchState) -> Ask:
        return Ask({}, url=state.cursor)

    def next(self, state: FetchState, answer: Answer) -> tuple[Token, str | None, int | None]:
        lowered = {k.lower(): v for k, v in answer.headers.items()}
        target = link_next(lowered.get("link"))
        more = target is not None and answer.count > 0
        return Token(more), (target if more else None), _total(answer, self.total_path, None)


Paginator = (
    OffsetPaginator | PageNumberPaginator | CursorPaginator | NextURLPaginator | LinkHeaderPaginator
)
PAGINATORS: Mapping[str, type[Paginator]] = {
    cls.type: cls
    for cls in (
        OffsetPaginator,
        PageNumberPaginator,
        CursorPaginator,
        NextURLPaginator,
        LinkHeaderPaginator,
    )
}
