"""The Inngest adapter: the local runner's sibling, with Inngest doing the waiting.

:func:`sync_functions` returns the Inngest functions to serve (``inngest.fast_api.serve``
or ``inngest.flask.serve``). Events, all under one prefix (default ``statesync``):

``statesync/job.requested``
    ``{"connector": "stripe", "entities": ["customers", …], "job_id"?, "mode"?,
    "params"?, "retry_failed"?}``. The job run creates the job in the store if absent,
    fans out one ``entity.sync`` event per unfinished entity, waits for each entity's
    ``entity.finished`` with a final state and returns a :class:`JobSummary` of every
    entity's end state as the store has it. A job of more than ``entities_per_run``
    entities fans out ``job.batch`` runs instead, each doing that for its slice and
    announcing ``batch.finished``, so no run passes Inngest's 1,000 steps.
``statesync/entity.sync``, ``statesync/entity.continue``
    ``{"job_id", "entity", "account", "instance", "chain", "start"}``: one entity's run.
    Each fetching transition is one step, ``sync-{entity}-chunk-{n}``, running
    ``perform_sync_chunk(..., expected_chunk=n)``. After ``chunks_per_run`` chunks the
    run hands over to a fresh run (``entity.continue``), so replay per run stays
    bounded whatever the sync's length.
``statesync/entity.finished``
    ``{"job_id", "instance", "entity", "state"}``, sent by the run that ends an entity,
    or by the failure handler when a failed run left the entity in a final state.

Duplicates collapse by *job instance* (:func:`job_instance`): fan-out and hand-over
event ids, and the entity function's idempotency key, are derived from the instance,
the entity, the chain and the chunk a run starts at, never from a run id; so two
requests for one job start one chain per entity (Inngest drops a repeated event id
for 24 h). Exclusion is per step delivery: the lease owner is the run, the step and
a nonce, so of two deliveries of one step at once exactly one fetches and the other
raises :class:`StepConflictError` (a retry) before any request, to find the chunk done.

The store is the source of truth. Retry decisions are the entity's
:class:`~statesync.RetryPolicy`'s (attempts are counted in the store): a retryable
error raises ``inngest.RetryAfterError`` with the policy's delay (clamped to Inngest's
1 s to 24 h), a final one ``inngest.NonRetriableError`` after the machine recorded
``failed``. Entity runs share an Inngest concurrency key per connector account.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from statesync._budget import BudgetRegistry
from statesync._models import SyncState
from statesync._namespace import effective_namespace
from statesync._plugins import ConnectorPlugin, JobConnectorFactory, job_factory
from statesync._policy import PolicySet
from statesync.adapters._inngest_model import (
    FINAL_STATES,
    INNGEST,
    MAX_EVENT_BYTES,
    ChunkSummary,
    EntitySummary,
    EntityTask,
    EventNames,
    JobBatch,
    JobPlan,
    JobRequest,
    JobSummary,
    dump,
    event_bytes,
    job_instance,
    literal,
    load,
)
from statesync.adapters._inngest_steps import (
    ConnectorFactory,
    StepBodies,
    StepConflictError,
    max_attempts,
)
from statesync.destination import Destination
from statesync.errors import ConfigurationError
from statesync.events import Listener
from statesync.store import StateStore

with INNGEST.importing():
    import inngest

__all__ = [
    "ChunkSummary",
    "EntitySummary",
    "EventNames",
    "JobSummary",
    "StepConflictError",
    "job_instance",
    "job_requested",
    "sync_functions",
    "wait_expression",
]

INNGEST_MAX_RETRIES = 20
"""Inngest's ceiling; entity runs use it so the retry policy, not Inngest, gives up."""
FAILURE_RETRIES = 4
"""The failure handler's store read rides out a hiccup instead of leaving the job waiting."""
MAX_STEPS = 1000
"""Inngest's steps per run."""
DEFAULT_CHUNKS_PER_RUN = 25
MAX_CHUNKS_PER_RUN = 100
"""Replay makes a run's n-th request cost more the larger n: the SDK walks every memo,
and its memo lookup copies the rest, so a request costs about 25-30 µs more per earlier
chunk and a run of n chunks O(n^3). Measured by ``bench/bench_inngest.py`` (SDK handler
CPU time) on the cheapest chunk there is (one in-memory record, ~2 ms): at 25 a run's
last 20 requests cost within 10% of its first 20 (1.03x); at 100 about 2x, which is
within 10% only for chunks of 30 ms or more (a real API page is slower than that).
Fewer chunks per run mean more runs: each adds a locate and a hand-over step (8% more
steps at 25)."""
DEFAULT_ENTITIES_PER_RUN = 900
MAX_ENTITIES_PER_RUN = MAX_STEPS - 4
"""A job run waits once per entity, beside its plan, fan-out, summary (or announcement)."""
MAX_WAIT = timedelta(days=365)
"""Inngest's longest wait on paid plans; the free plan's is 7 days."""
DEFAULT_WAIT = timedelta(days=6)
"""Below the free plan's 7-day maximum, so the default registers on every plan."""
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

T = TypeVar("T")
_Json = dict[str, Any]


def _per_job(
    name: str, factory: ConnectorPlugin | JobConnectorFactory | str
) -> JobConnectorFactory:
    """``job_factory(factory)``, with a refusal that names the setting it came from."""
    try:
        return job_factory(factory)
    except ConfigurationError as exc:
        raise ConfigurationError(f"connectors[{name!r}]: {exc}") from exc


def sync_functions(
    client: inngest.Inngest,
    *,
    connectors: Mapping[str, ConnectorFactory | ConnectorPlugin],
    store: StateStore,
    destination: Destination,
    policies: PolicySet | None = None,
    chunks_per_run: int = DEFAULT_CHUNKS_PER_RUN,
    event_prefix: str = "statesync",
    account_concurrency: int | None = 4,
    wait_timeout: timedelta = DEFAULT_WAIT,
    entities_per_run: int = DEFAULT_ENTITIES_PER_RUN,
    listeners: Iterable[Listener] = (),
    budgets: BudgetRegistry | None = None,
    namespaces: Mapping[str, str] | str | None = None,
) -> list[inngest.Function[Any]]:
    """The Inngest functions that run statesync jobs; serve them with your framework.

    ``connectors`` maps connector names (as job requests name them) to factories
    building a connector for a job, or to connector plugins ``(options, env)`` (see
    :func:`statesync.job_factory`); keys and credentials come from your environment,
    never from event data. Each connector built is closed after its step.
    ``account_concurrency`` (≥ 1, or ``None`` for no cap) caps concurrently running
    entity steps per API account. ``wait_timeout`` (1 s to 365 days; the free plan
    allows 7 days) bounds how long a job run waits for an entity; afterwards it reports
    the entity's state as the store has it. ``chunks_per_run`` (1 to
    :data:`MAX_CHUNKS_PER_RUN`) and ``entities_per_run`` (1 to
    :data:`MAX_ENTITIES_PER_RUN`) keep every run within Inngest's 1,000 steps.
    ``namespaces`` routes each connector's new jobs to a namespace of ``destination``
    (a PostgreSQL schema, a table prefix in SQLite): a mapping by connector name, or one
    name for all; a connector not named writes into its own name's namespace, so two
    connectors never share a table; ``""`` is the shared tables of older releases. A request's
    ``params["namespace"]`` overrides it; a stored job keeps the namespace it was
    created with. A bad setting raises :class:`~statesync.errors.ConfigurationError`
    naming it.
    """
    INNGEST.require()
    policies = policies or PolicySet()
    per_job = {name: _per_job(name, factory) for name, factory in connectors.items()}
    _check_settings(
        connectors=per_job,
        policies=policies,
        chunks_per_run=chunks_per_run,
        event_prefix=event_prefix,
        account_concurrency=account_concurrency,
        wait_timeout=wait_timeout,
        entities_per_run=entities_per_run,
    )
    bodies = StepBodies(
        per_job,
        store,
        destination,
        policies,
        tuple(listeners),
        budgets or BudgetRegistry(),
        _namespaces(per_job, namespaces),
    )
    names = EventNames(event_prefix)
    entity = _entity_function(client, bodies, names, chunks_per_run, account_concurrency)
    job = _JobFunction(client, bodies, names, wait_timeout, entities_per_run)
    return [job.function(), entity, _failure_function(client, bodies, names, entity)]


def job_requested(
    connector: str,
    entities: Iterable[str],
    *,
    job_id: str | None = None,
    retry_failed: bool = False,
    event_prefix: str = "statesync",
) -> inngest.Event:
    """The event that starts (or resumes) a job, for ``client.send``."""
    INNGEST.require()
    request = JobRequest(connector, tuple(entities), job_id, retry_failed=retry_failed)
    data = {k: v for k, v in dump(request).items() if v is not None}
    name = EventNames(event_prefix).job_requested
    size = event_bytes({"name": name, "data": data})
    if size > MAX_EVENT_BYTES:
        raise ConfigurationError(
            f"the {name} event would be {size} bytes; Inngest accepts at most {MAX_EVENT_BYTES}"
        )
    return inngest.Event(name=name, data=data)


# -- settings ------------------------------------------------------------------


def _check_settings(
    *,
    connectors: Mapping[str, ConnectorFactory],
    policies: PolicySet,
    chunks_per_run: int,
    event_prefix: str,
    account_concurrency: int | None,
    wait_timeout: timedelta,
    entities_per_run: int,
) -> None:
    """Refuse, at registration, every setting the Inngest server would misread."""
    _int_within("chunks_per_run", chunks_per_run, MAX_CHUNKS_PER_RUN)
    _int_within("entities_per_run", entities_per_run, MAX_ENTITIES_PER_RUN)
    if account_concurrency is not None:
        # Inngest reads a limit of 0 as "no limit": None says that, 0 is a mistake.
        _int_within("account_concurrency", account_concurrency, None)
    if not isinstance(wait_timeout, timedelta) or not (
        timedelta(seconds=1) <= wait_timeout <= MAX_WAIT
    ):
        raise ConfigurationError(
            f"wait_timeout must be a timedelta within 1 s..{MAX_WAIT.days} days "
            f"(the free plan allows 7 days), got {wait_timeout!r}"
        )
    if not isinstance(event_prefix, str) or not _PREFIX.fullmatch(event_prefix):
        raise ConfigurationError(
            "event_prefix must be 1-64 letters, digits, '_', '.' or '-' (it names events "
            f"and function ids), got {event_prefix!r}"
        )
    for name, factory in connectors.items():
        if not callable(factory):
            raise ConfigurationError(f"connectors[{name!r}] must be a connector factory")
    if max_attempts(policies) > INNGEST_MAX_RETRIES + 1:
        raise ConfigurationError(
            f"policies: a retry policy allows {max_attempts(policies)} attempts; Inngest "
            f"retries a step at most {INNGEST_MAX_RETRIES} times"
        )


def _namespaces(
    connectors: Mapping[str, ConnectorFactory], given: Mapping[str, str] | str | None
) -> dict[str, str | None]:
    """Each connector's namespace (``None``: the shared tables), every name checked.

    A connector not named gets its own name (:func:`~statesync.default_namespace`).
    """
    if isinstance(given, str):
        given = dict.fromkeys(connectors, given)
    given = given or {}
    unknown = sorted(set(given) - set(connectors))
    if unknown:
        raise ConfigurationError(f"namespaces names unknown connectors: {', '.join(unknown)}")
    out: dict[str, str | None] = {}
    for name in connectors:
        try:
            out[name] = effective_namespace(name, given.get(name))
        except ConfigurationError as exc:
            raise ConfigurationError(f"namespaces[{name!r}]: {exc}") from None
    return out


def _int_within(name: str, value: object, most: int | None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if ok and (most is None or value <= most):  # type: ignore[operator]
        return
    span = f"1..{most}" if most is not None else "an int >= 1 (or None: no limit)"
    raise ConfigurationError(f"{name} must be {span}, got {value!r}")


# -- steps and events ----------------------------------------------------------


async def _raw_step(ctx: inngest.Context, step_id: str, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``body`` as step ``step_id``; the output is unstructured by the converter."""

    async def run() -> _Json:
        return dump(await body())

    return await ctx.step.run(step_id, run)


async def _step(
    ctx: inngest.Context, step_id: str, body: Callable[[], Awaitable[Any]], cls: type[T]
) -> T:
    return load(await _raw_step(ctx, step_id, body), cls)


def _event(name: str, event_id: str, data: _Json) -> inngest.Event:
    """An event checked against Inngest's size limit before anything sends it."""
    size = event_bytes({"name": name, "id": event_id, "data": data})
    if size > MAX_EVENT_BYTES:
        raise inngest.NonRetriableError(
            f"event {name} ({event_id[:80]}) is {size} bytes; Inngest accepts at most "
            f"{MAX_EVENT_BYTES} (shorten the job id or entity names)"
        )
    return inngest.Event(name=name, id=event_id, data=data)


def _cel(value: str) -> str:
    try:
        return literal(value)
    except ValueError as exc:
        raise inngest.NonRetriableError(str(exc)) from exc


def _finished(names: EventNames, task: EntityTask, state: str, event_id: str) -> inngest.Event:
    data = {"job_id": task.job_id, "instance": task.instance, "entity": task.entity}
    return _event(names.entity_finished, event_id, {**data, "state": state})


def wait_expression(instance: str, entity: str) -> str:
    """What a job run's wait for ``entity`` matches: its instance, and a final state."""
    finals = ", ".join(literal(s) for s in FINAL_STATES)
    return (
        f"async.data.instance == {_cel(instance)} && async.data.entity == {_cel(entity)} "
        f"&& async.data.state in [{finals}]"
    )


# -- the job run ---------------------------------------------------------------


class _JobFunction:
    """The job run: plan, fan out and wait, summarize; or the same per batch."""

    def __init__(
        self,
        client: inngest.Inngest,
        bodies: StepBodies,
        names: EventNames,
        wait_timeout: timedelta,
        per_run: int,
    ) -> None:
        self.client, self.bodies, self.names = client, bodies, names
        self.wait_timeout, self.per_run = wait_timeout, per_run

    def function(self) -> inngest.Function[Any]:
        names = self.names

        @self.client.create_function(
            fn_id=f"{names.prefix}-job",
            name=f"{names.prefix}: job",
            trigger=[
                inngest.TriggerEvent(event=names.job_requested),
                inngest.TriggerEvent(event=names.job_batch),
            ],
            retries=4,
        )
        async def run_job(ctx: inngest.Context) -> _Json:
            if ctx.event.name == names.job_batch:
                return await self.batch(ctx, load(ctx.event.data, JobBatch))
            return await self.job(ctx, load(ctx.event.data, JobRequest))

        return run_job

    async def job(self, ctx: inngest.Context, request: JobRequest) -> _Json:
        default_id = f"job-{ctx.event.id or ctx.run_id}"
        body = partial(self.bodies.plan_job, request, default_id, self.per_run)
        plan = await _step(ctx, "plan-job", body, JobPlan)
        if plan.batches:
            if len(plan.batches) > MAX_ENTITIES_PER_RUN:
                raise inngest.NonRetriableError(
                    f"job {plan.job_id!r} has {len(plan.batches)} batches of "
                    f"{self.per_run} entities; one run waits on at most {MAX_ENTITIES_PER_RUN}"
                )
            await ctx.group.parallel(self._batch_fan_out(ctx, plan, request.retry_failed))
        elif plan.tasks:
            await ctx.group.parallel(self._fan_out(ctx, plan))
        summary = partial(self.bodies.summarize, plan.job_id)
        return dump(await _step(ctx, "summarize", summary, JobSummary))

    async def batch(self, ctx: inngest.Context, batch: JobBatch) -> _Json:
        plan = await _step(ctx, "plan-batch", partial(self.bodies.plan_batch, batch), JobPlan)
        if plan.tasks:
            await ctx.group.parallel(self._fan_out(ctx, plan))
        event_id = f"{batch.instance}/batch/{batch.batch}/finished"
        done = self._batch_done(batch.instance, batch.batch, event_id)
        await ctx.step.send_event("batch-finished", done)
        return {"job_id": batch.job_id, "batch": batch.batch}

    def _fan_out(
        self, ctx: inngest.Context, plan: JobPlan
    ) -> tuple[Callable[[], Awaitable[object]], ...]:
        """The waits and the fan-out as one parallel group.

        Inngest registers every wait of the group before it runs the planned fan-out
        step, and that step re-reads the store: an entity another chain finished since
        the plan (a duplicate request's) is announced again instead of started, so no
        wait can miss its event.
        """
        waits = tuple(
            partial(
                ctx.step.wait_for_event,
                f"wait-{task.entity}",
                event=self.names.entity_finished,
                if_exp=wait_expression(plan.instance, task.entity),
                timeout=self.wait_timeout,
            )
            for task in plan.tasks
        )
        return (*waits, partial(ctx.step.run, "fan-out", partial(self._send_tasks, ctx, plan)))

    async def _send_tasks(self, ctx: inngest.Context, plan: JobPlan) -> _Json:
        running, final = await self.bodies.split_final(plan.tasks)
        events = [_event(self.names.entity_sync, t.event_id, dump(t)) for t in running]
        events += [
            _finished(self.names, t, state.value, f"{t.event_id}/announced/{ctx.run_id}")
            for t, state in final
        ]
        await self._send(events)
        return {"started": len(running), "announced": len(final)}

    def _batch_fan_out(
        self, ctx: inngest.Context, plan: JobPlan, retry_failed: bool
    ) -> tuple[Callable[[], Awaitable[object]], ...]:
        waits = tuple(
            partial(
                ctx.step.wait_for_event,
                f"wait-batch-{i}",
                event=self.names.batch_finished,
                if_exp=f"async.data.instance == {_cel(plan.instance)} && async.data.batch == {i}",
                timeout=self.wait_timeout,
            )
            for i in range(len(plan.batches))
        )
        batches = [
            JobBatch(plan.job_id, plan.instance, i, start, stop, retry_failed)
            for i, (start, stop) in enumerate(plan.batches)
        ]
        send = partial(self._send_batches, ctx, batches)
        return (*waits, partial(ctx.step.run, "fan-out-batches", send))

    async def _send_batches(self, ctx: inngest.Context, batches: list[JobBatch]) -> _Json:
        events = []
        for b in batches:
            base = f"{b.instance}/batch/{b.batch}"
            if await self.bodies.batch_final(b):
                events.append(self._batch_done(b.instance, b.batch, f"{base}/{ctx.run_id}"))
            else:
                events.append(_event(self.names.job_batch, base, dump(b)))
        await self._send(events)
        return {"batches": len(batches)}

    def _batch_done(self, instance: str, batch: int, event_id: str) -> inngest.Event:
        return _event(self.names.batch_finished, event_id, {"instance": instance, "batch": batch})

    async def _send(self, events: list[inngest.Event]) -> None:
        """Send in requests of at most one event's size limit each."""
        batch: list[inngest.Event] = []
        size = 0
        for event in events:
            nbytes = event_bytes(event.to_dict())  # type: ignore[arg-type]
            if batch and size + nbytes > MAX_EVENT_BYTES:
                await self.client.send(batch)
                batch, size = [], 0
            batch.append(event)
            size += nbytes
        if batch:
            await self.client.send(batch)


# -- the entity runs -----------------------------------------------------------


def _entity_function(
    client: inngest.Inngest,
    bodies: StepBodies,
    names: EventNames,
    chunks_per_run: int,
    account_concurrency: int | None,
) -> inngest.Function[Any]:
    @client.create_function(
        fn_id=f"{names.prefix}-entity",
        name=f"{names.prefix}: entity",
        trigger=[
            inngest.TriggerEvent(event=names.entity_sync),
            inngest.TriggerEvent(event=names.entity_continue),
        ],
        retries=INNGEST_MAX_RETRIES,
        concurrency=_concurrency(account_concurrency),
        # The event id already collapses duplicates; the key also catches a copy sent
        # under another id. Not `singleton`: "skip" would drop a hand-over arriving
        # while its predecessor returns, "cancel" would kill a live chain.
        idempotency=(
            'event.data.instance + "/" + event.data.entity + "/" + event.data.chain'
            ' + "/" + string(event.data.start)'
        ),
    )
    async def run_entity(ctx: inngest.Context) -> _Json:
        task = load(ctx.event.data, EntityTask)
        return await _drive(ctx, bodies, names, task, chunks_per_run)

    return run_entity


def _failure_function(
    client: inngest.Inngest, bodies: StepBodies, names: EventNames, entity: inngest.Function[Any]
) -> inngest.Function[Any]:
    """The entity function's failure handler, as its own function so it can retry."""

    @client.create_function(
        fn_id=f"{names.prefix}-entity-failure",
        name=f"{names.prefix}: entity (failure)",
        trigger=inngest.TriggerEvent(
            event="inngest/function.failed",
            expression=f"event.data.function_id == {literal(entity.id)}",
        ),
        retries=FAILURE_RETRIES,
    )
    async def on_failure(ctx: inngest.Context) -> _Json:
        # A failed run owes the waiting job run its entity.finished, but only a final
        # state ends the wait: a non-final one means another chain (or a repeated
        # request) still drives the entity, and that chain will announce it.
        failed = ctx.event.data
        original = failed.get("event")
        task = load(original.get("data") if isinstance(original, Mapping) else None, EntityTask)
        body = partial(bodies.entity_state, task)
        state = (await _step(ctx, "entity-state", body, EntitySummary)).state
        if state in (SyncState.PENDING, SyncState.FETCHING, SyncState.CHUNK_DONE):
            return {"announced": False, "state": state.value}
        run_id = str(failed.get("run_id", ""))
        await _announce(ctx, names, task, state.value, f"{task.event_id}/failed/{run_id}")
        return {"announced": True, "state": state.value}

    return on_failure


def _concurrency(limit: int | None) -> list[inngest.Concurrency] | None:
    if limit is None:
        return None
    return [inngest.Concurrency(limit=limit, key="event.data.account")]


async def _drive(
    ctx: inngest.Context,
    bodies: StepBodies,
    names: EventNames,
    task: EntityTask,
    chunks_per_run: int,
) -> _Json:
    """Up to ``chunks_per_run`` chunk steps, then either the entity's end or a hand-over."""
    entity = task.entity
    raw = await _raw_step(ctx, f"sync-{entity}-locate", partial(bodies.locate, task))
    chunk, finished = ChunkSummary.peek(raw)
    for _ in range(chunks_per_run):
        if finished:
            break
        step_id = f"sync-{entity}-chunk-{chunk}"
        raw = await ctx.step.run(step_id, partial(_chunk_step, ctx, bodies, task, chunk, step_id))
        chunk, finished = ChunkSummary.peek(raw)
    if finished:
        summary = load(raw, ChunkSummary)
        await _announce(ctx, names, task, summary.state.value, f"{task.event_id}/finished")
        return dump(summary)
    nxt = task.handover(chunk)
    handover = _event(names.entity_continue, nxt.event_id, dump(nxt))
    await ctx.step.send_event(f"sync-{entity}-handover-{chunk}", handover)
    return dict(raw)


async def _chunk_step(
    ctx: inngest.Context, bodies: StepBodies, task: EntityTask, chunk: int, step_id: str
) -> _Json:
    # A fresh nonce per delivery: a second delivery of this very step is another owner.
    owner = f"inngest:{ctx.run_id}:{step_id}:{secrets.token_hex(4)}"
    return (await bodies.run_chunk(task, chunk, owner)).brief()


async def _announce(
    ctx: inngest.Context, names: EventNames, task: EntityTask, state: str, event_id: str
) -> None:
    await ctx.step.send_event(
        f"sync-{task.entity}-finished", _finished(names, task, state, event_id)
    )
