"""The Inngest adapter: the local runner's sibling, with Inngest doing the waiting.

:func:`sync_functions` returns two Inngest functions to serve (``inngest.fast_api.serve``
or ``inngest.flask.serve``). Events, all under one prefix (default ``statesync``):

``statesync/job.requested``
    ``{"connector": "stripe", "entities": ["customers", …], "job_id"?, "mode"?,
    "params"?, "retry_failed"?}``. The job run creates the job in the store if absent,
    fans out one ``entity.sync`` event per unfinished entity, waits for each entity's
    ``entity.finished`` and returns a :class:`JobSummary` of every entity's end state.
``statesync/entity.sync``, ``statesync/entity.continue``
    ``{"job_id", "entity", "account"}``: one entity's run. Each fetching transition is
    one step, ``sync-{entity}-chunk-{n}``, running ``perform_sync_chunk(...,
    expected_chunk=n)`` and returning a :class:`ChunkSummary` (never records). After
    ``chunks_per_run`` chunks the run hands over to a fresh run by sending
    ``entity.continue`` with the deterministic id ``{job}-{entity}-handover-{n}``, so
    state and replay cost per run stay bounded whatever the sync's length.
``statesync/entity.finished``
    ``{"job_id", "entity", "state"}``, sent by the run that ends an entity (or by the
    entity function's failure handler when a run fails).

The store is the source of truth: a step Inngest runs again (its response was lost)
finds its chunk done and returns the same summary without fetching. Retry decisions are
the entity's :class:`~statesync.RetryPolicy`'s (attempts are counted in the store):
a retryable error raises ``inngest.RetryAfterError`` with the policy's delay, a final
one ``inngest.NonRetriableError`` after the machine recorded ``failed``. Entity runs
share an Inngest concurrency key per connector account (``connector.account``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import inngest

from statesync._budget import BudgetRegistry
from statesync._plugins import ConnectorPlugin, job_factory
from statesync._policy import PolicySet
from statesync.adapters._inngest_model import (
    ChunkSummary,
    EntitySummary,
    EntityTask,
    EventNames,
    JobPlan,
    JobRequest,
    JobSummary,
    dump,
    literal,
    load,
)
from statesync.adapters._inngest_steps import ConnectorFactory, Engine, max_attempts
from statesync.destination import Destination
from statesync.errors import ConfigurationError
from statesync.events import Listener
from statesync.store import StateStore

__all__ = [
    "ChunkSummary",
    "EntitySummary",
    "EventNames",
    "JobSummary",
    "job_requested",
    "sync_functions",
]

INNGEST_MAX_RETRIES = 20
"""Inngest's ceiling; entity runs use it so the retry policy, not Inngest, gives up."""
MAX_CHUNKS_PER_RUN = 990
"""Inngest allows 1,000 steps a run; a run adds a locate and a hand-over step."""

T = TypeVar("T")
_Json = dict[str, Any]


def sync_functions(
    client: inngest.Inngest,
    *,
    connectors: Mapping[str, ConnectorFactory | ConnectorPlugin],
    store: StateStore,
    destination: Destination,
    policies: PolicySet | None = None,
    chunks_per_run: int = 200,
    event_prefix: str = "statesync",
    account_concurrency: int | None = 4,
    wait_timeout: timedelta = timedelta(days=7),
    listeners: Iterable[Listener] = (),
    budgets: BudgetRegistry | None = None,
) -> list[inngest.Function[Any]]:
    """The Inngest functions that run statesync jobs; serve them with your framework.

    ``connectors`` maps connector names (as job requests name them) to factories
    building a connector for a job, or to connector plugins ``(options, env)`` (see
    :func:`statesync.job_factory`); keys and credentials come from your environment,
    never from event data. Each connector built is closed after its step.
    ``account_concurrency`` caps concurrently running entity steps per API account
    (``None``: no cap). ``wait_timeout`` bounds how long a job run waits for an entity;
    afterwards it reports the entity's state as the store has it.
    """
    policies = policies or PolicySet()
    _check(chunks_per_run, policies)
    per_job = {name: job_factory(factory) for name, factory in connectors.items()}
    engine = Engine(
        per_job, store, destination, policies, tuple(listeners), budgets or BudgetRegistry()
    )
    names = EventNames(event_prefix)
    return [
        _job_function(client, engine, names, wait_timeout),
        _entity_function(client, engine, names, chunks_per_run, account_concurrency),
    ]


def job_requested(
    connector: str,
    entities: Iterable[str],
    *,
    job_id: str | None = None,
    retry_failed: bool = False,
    event_prefix: str = "statesync",
) -> inngest.Event:
    """The event that starts (or resumes) a job, for ``client.send``."""
    request = JobRequest(connector, tuple(entities), job_id, retry_failed=retry_failed)
    data = {k: v for k, v in dump(request).items() if v is not None}
    return inngest.Event(name=EventNames(event_prefix).job_requested, data=data)


def _check(chunks_per_run: int, policies: PolicySet) -> None:
    if not 1 <= chunks_per_run <= MAX_CHUNKS_PER_RUN:
        raise ConfigurationError(
            f"chunks_per_run must be within 1..{MAX_CHUNKS_PER_RUN}, got {chunks_per_run}"
        )
    if max_attempts(policies) > INNGEST_MAX_RETRIES + 1:
        raise ConfigurationError(
            f"a retry policy allows {max_attempts(policies)} attempts; Inngest retries a "
            f"step at most {INNGEST_MAX_RETRIES} times"
        )


async def _raw_step(ctx: inngest.Context, step_id: str, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body`` as step ``step_id``; the output is unstructured by the converter."""

    async def run() -> _Json:
        return dump(await body())

    return await ctx.step.run(step_id, run)


async def _step(
    ctx: inngest.Context, step_id: str, body: Callable[[], Awaitable[Any]], cls: type[T]
) -> T:
    return load(await _raw_step(ctx, step_id, body), cls)


# -- the job run ---------------------------------------------------------------


def _job_function(
    client: inngest.Inngest, engine: Engine, names: EventNames, wait_timeout: timedelta
) -> inngest.Function[Any]:
    @client.create_function(
        fn_id=f"{names.prefix}-job",
        name=f"{names.prefix}: job",
        trigger=inngest.TriggerEvent(event=names.job_requested),
        retries=4,
    )
    async def run_job(ctx: inngest.Context) -> _Json:
        request = load(ctx.event.data, JobRequest)
        default_id = f"job-{ctx.event.id or ctx.run_id}"
        plan = await _step(ctx, "plan-job", partial(engine.plan_job, request, default_id), JobPlan)
        if plan.pending:
            await ctx.group.parallel(_fan_out(ctx, names, plan, wait_timeout))
        return dump(
            await _step(ctx, "summarize", partial(engine.summarize, plan.job_id), JobSummary)
        )

    return run_job


def _fan_out(
    ctx: inngest.Context, names: EventNames, plan: JobPlan, wait_timeout: timedelta
) -> tuple[Callable[[], Awaitable[object]], ...]:
    """The waits and the fan-out as one parallel group.

    Inngest registers every wait of the group before it runs the planned send, so an
    entity that finishes at once cannot slip past its wait.
    """
    waits = tuple(
        partial(
            ctx.step.wait_for_event,
            f"wait-{entity}",
            event=names.entity_finished,
            if_exp=(
                f"async.data.job_id == {literal(plan.job_id)} && "
                f"async.data.entity == {literal(entity)}"
            ),
            timeout=wait_timeout,
        )
        for entity in plan.pending
    )
    events = [
        inngest.Event(
            name=names.entity_sync,
            id=f"{plan.job_id}-{entity}-sync-{ctx.run_id}",
            data=dump(EntityTask(plan.job_id, entity, plan.account)),
        )
        for entity in plan.pending
    ]
    return (*waits, partial(ctx.step.send_event, "fan-out", events))


# -- the entity runs -----------------------------------------------------------


def _entity_function(
    client: inngest.Inngest,
    engine: Engine,
    names: EventNames,
    chunks_per_run: int,
    account_concurrency: int | None,
) -> inngest.Function[Any]:
    async def on_failure(ctx: inngest.Context) -> None:
        # A run that failed (the policy gave up, or Inngest ran out of retries) still
        # owes the waiting job run its entity.finished.
        failed = ctx.event.data
        original = failed.get("event")
        data = original.get("data") if isinstance(original, Mapping) else None
        task = load(data, EntityTask)
        state = await _step(ctx, "entity-state", partial(engine.entity_state, task), EntitySummary)
        await _announce(ctx, names, task, state.state.value, str(failed.get("run_id", "")))

    @client.create_function(
        fn_id=f"{names.prefix}-entity",
        name=f"{names.prefix}: entity",
        trigger=[
            inngest.TriggerEvent(event=names.entity_sync),
            inngest.TriggerEvent(event=names.entity_continue),
        ],
        retries=INNGEST_MAX_RETRIES,
        concurrency=_concurrency(account_concurrency),
        on_failure=on_failure,
    )
    async def run_entity(ctx: inngest.Context) -> _Json:
        task = load(ctx.event.data, EntityTask)
        return await _drive(ctx, engine, names, task, chunks_per_run)

    return run_entity


def _concurrency(limit: int | None) -> list[inngest.Concurrency] | None:
    if limit is None:
        return None
    return [inngest.Concurrency(limit=limit, key="event.data.account")]


async def _drive(
    ctx: inngest.Context, engine: Engine, names: EventNames, task: EntityTask, budget: int
) -> _Json:
    """Up to ``budget`` chunk steps, then either the entity's end or a hand-over."""
    entity, owner = task.entity, f"inngest:{ctx.run_id}"
    raw = await _raw_step(ctx, f"sync-{entity}-locate", partial(engine.locate, task))
    chunk, finished = ChunkSummary.peek(raw)
    for _ in range(budget):
        body = partial(engine.run_chunk, task, chunk, owner)
        raw = await _raw_step(ctx, f"sync-{entity}-chunk-{chunk}", body)
        chunk, finished = ChunkSummary.peek(raw)
        if finished:
            summary = load(raw, ChunkSummary)
            await _announce(ctx, names, task, summary.state.value, ctx.run_id)
            return dump(summary)
    await ctx.step.send_event(
        f"sync-{entity}-handover-{chunk}",
        inngest.Event(
            name=names.entity_continue,
            id=f"{task.job_id}-{entity}-handover-{chunk}",
            data=dump(task),
        ),
    )
    return dict(raw)


async def _announce(
    ctx: inngest.Context, names: EventNames, task: EntityTask, state: str, run_id: str
) -> None:
    await ctx.step.send_event(
        f"sync-{task.entity}-finished",
        inngest.Event(
            name=names.entity_finished,
            id=f"{task.job_id}-{task.entity}-finished-{run_id}",
            data={"job_id": task.job_id, "entity": task.entity, "state": state},
        ),
    )
