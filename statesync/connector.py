"""The connector plug-in point: one page request, token in, token out.

A connector knows how to ask its API for one page given a :class:`FetchState`, and how
to read the answer into a :class:`Page`. The chunk loop, checkpoints, retries and
waiting are the engine's, written once in :mod:`statesync._chunk`.

Implementations live in :mod:`statesync.connectors` (Stripe, Close, GraphQL, REST);
each passes the connector contract shipped as :mod:`statesync.testing`, which a
third-party connector runs too.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence

from attrs import frozen

from statesync._models import FetchState, Page, PageRequest, ResumableFetchOptions

OnPage = Callable[[Page, FetchState], Awaitable[None]]
"""Called after each page with the page and the state to resume from once it is stored."""


@frozen
class Partitioning:
    """How an entity can be split into creation-time windows walked concurrently.

    ``newest_first``: the API lists the window newest first (Stripe) rather than oldest
    first. ``lower``: the earliest creation time (Unix seconds) records can have, when
    known; ``None`` leaves the oldest window open.
    """

    newest_first: bool = True
    """The order of records inside a window: ``True`` newest first (descending creation
    time, Stripe), ``False`` oldest first. The engine splits a window on the far side
    of the page just landed, so this must be the API's real order."""
    lower: int | None = None
    """The earliest creation time records can have, in Unix seconds, inclusive; ``None``
    leaves the oldest window open below. Windows are ``[lower, upper)`` (see
    :class:`~statesync.TimeWindow`): a connector sends ``created >= lower`` and
    ``created < upper``."""


class BaseConnector(abc.ABC):
    """Base class of connectors (the seed's ``BaseConnector``).

    ``name`` identifies the connector kind in job specs; ``account`` identifies the API
    account (never the key itself) so rate budgets and concurrency keys can be shared.
    """

    name: str = "base"

    @property
    def account(self) -> str:
        return self.name

    def supports_resumable_fetching(self) -> bool:
        """Whether :meth:`fetch_page` can resume from a checkpointed ``FetchState``.

        A connector that returns ``False`` is run as one unchunked pass (the seed's
        fallback): its pages are still written as they come, but a crash restarts it.
        """
        return True

    @abc.abstractmethod
    async def fetch_page(self, request: PageRequest) -> Page:
        """Fetch the one page ``request.state`` points at.

        Raises :class:`~statesync.errors.ConnectorError` subclasses for API failures.
        """

    def entities(self) -> Sequence[str]:
        """Entities this connector offers by default (a job may name others)."""
        return ()

    # -- throughput capabilities (all optional; the defaults keep an entity sequential)

    def plan_pages(self, request: PageRequest, count: int) -> Sequence[PageRequest]:
        """Up to ``count`` requests for the pages after ``request``'s, planned before it
        is answered: what offset pagination allows (offsets are predictable).

        The engine sends them concurrently and, in order, hands each answer to
        :meth:`settle` with the request the checkpoint actually reached. The default
        plans nothing: the entity's pages are fetched one after another.
        """
        return ()

    def settle(self, planned: PageRequest, page: Page, actual: PageRequest) -> Page | None:
        """The answer to ``planned`` as the page ``actual`` asks for, or ``None`` when
        it does not answer it (the engine then drops every planned page and fetches
        ``actual`` itself). The default accepts the page when both requests stand at
        the same offset, cursor and metadata.
        """
        return page if planned.state.position() == actual.state.position() else None

    def partitioning(self, entity: str) -> Partitioning | None:
        """How ``entity`` can be walked as concurrent creation-time windows, or ``None``.

        A connector returning a :class:`Partitioning` restricts each request to
        ``request.window`` and answers records with ``created_at`` set (the engine splits
        a dense window by the creation times it sees).
        """
        return None

    def initial_state(self, options: ResumableFetchOptions) -> FetchState:
        """Where a fresh fetch starts."""
        return FetchState()

    async def fetch_entity_chunk(
        self, options: ResumableFetchOptions, on_page: OnPage | None = None
    ) -> FetchState:
        """Fetch up to ``options.max_iterations`` pages and return the state to resume from.

        The seed's method, kept for callers that drive connectors by hand; the engine
        uses :func:`statesync.perform_sync_chunk`, which also writes and checkpoints.
        """
        state = (options.state or self.initial_state(options)).new_chunk()
        while state.has_more and state.iterations_in_chunk < options.max_iterations:
            page = await self.fetch_page(
                PageRequest(
                    entity=options.entity,
                    state=state,
                    page_size=options.page_size,
                    since=options.since,
                    mode=options.mode,
                )
            )
            state = state.advance(page)
            if on_page is not None:
                await on_page(page, state)
        return state

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most connectors override
        """Release connections."""
