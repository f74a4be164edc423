"""A small Inngest executor for tests: drives the real SDK handler over real HTTP.

It speaks the SDK protocol the way the Inngest server does (``docs/SDK_SPEC.md`` in
inngest/inngest): it POSTs each call request with the event and the memoized step
results keyed by hashed step id, reads the ``206`` op lists (``StepRun``,
``StepPlanned``, ``StepError``, ``StepFailed``, ``WaitForEvent``, ``Sleep``), runs planned
steps by targeting them, retries failed requests honouring ``Retry-After`` (clamped to
the server's 1 s to 24 h) and ``X-Inngest-No-Retry``, emits ``inngest/function.failed``
when a run fails (failure handlers are ordinary functions it triggers), and receives
events on its event API (``POST /e/{key}``). Trigger expressions, idempotency keys and
wait conditions are evaluated with a real CEL implementation (``cel-python``); a
repeated event id is dropped for 24 hours, an idempotency key holds for 24 hours, and
concurrency keys are applied. Runs go on concurrently; retry delays pass on a virtual
clock, never slept. Inngest's limits are enforced: a run passing 1,000 steps, a step
output or response body over 4 MiB, run state over 32 MiB or an event over 256 KiB
fails the run (or the send) and :meth:`Executor.run_until_idle`.

Every attempt of every step is recorded (:class:`StepAttempt`) for tests to assert on.
Liberties: when a discovery request fails the executor learns which step failed by
asking again with immediate execution disabled (the real server knows from its queue);
``response_lost`` drops a step's response; ``redeliver`` delivers a step a second time
while the first delivery still runs (the server's retry after a timed-out request),
treating the first's answer as lost; ``before_call`` lets a test change the world (stop
a server) between two requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import celpy
import celpy.adapter
import celpy.celparser
import celpy.evaluation
import fastapi
import httpx
import inngest
import inngest.fast_api
import uvicorn

MiB = 1024 * 1024
KiB = 1024
FAILED_EVENT = "inngest/function.failed"
CPU_HEADER = "x-test-handler-cpu"
DEDUPE_SECONDS = 24 * 3600.0
"""How long Inngest drops a repeated event id (and holds an idempotency key)."""
MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1.0, 24 * 3600.0
Json = Any


class LimitExceeded(AssertionError):
    """A run went past one of Inngest's limits."""


class ExecutorError(AssertionError):
    """The SDK answered something this executor does not handle."""


class EventRejected(ValueError):
    """The event API refused a send (as Inngest does: an event over its size limit)."""


@dataclass(frozen=True)
class Limits:
    max_steps: int = 1000
    max_step_output: int = 4 * MiB
    max_response: int = 4 * MiB
    max_run_state: int = 32 * MiB
    max_event: int = 256 * KiB


@dataclass(frozen=True)
class StepAttempt:
    """One try of one step: ``outcome`` is ok, lost, retry, error, failed or non_retriable."""

    run_id: str
    function_id: str
    step: str
    attempt: int
    outcome: str
    delay: float | None = None
    clock: float = 0.0
    detail: str = ""


@dataclass
class _Fn:
    id: str
    triggers: tuple[tuple[str, str | None], ...]
    retries: int
    concurrency: tuple[tuple[int, str | None], ...]
    idempotency: str | None = None


_SURROGATE_ESCAPE = re.compile(r"(?<!\\)\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class Cel:
    """CEL as Inngest evaluates it: compiled once per expression, errors match nothing.

    CEL has no surrogate pairs: a ``\\ud83d`` escape is a compile error on the server
    (cel-go), so it is one here too, whatever the Python package tolerates.
    """

    def __init__(self) -> None:
        self._env = celpy.Environment()
        self._programs: dict[str, Any] = {}

    def evaluate(self, expr: str, scope: Mapping[str, Json]) -> Json:
        program = self._programs.get(expr)
        if program is None:
            if _SURROGATE_ESCAPE.search(expr):
                raise ExecutorError(f"CEL rejects surrogate escapes: {expr!r}")
            try:
                program = self._env.program(self._env.compile(expr))
            except celpy.celparser.CELParseError as exc:
                raise ExecutorError(f"not CEL: {expr!r}: {exc}") from exc
            self._programs[expr] = program
        try:
            result = program.evaluate(cast(Any, celpy.adapter.json_to_cel(dict(scope))))
        except celpy.evaluation.CELEvalError:
            return None
        return None if isinstance(result, celpy.evaluation.CELEvalError) else result

    def true(self, expr: str | None, scope: Mapping[str, Json]) -> bool:
        if not expr:
            return True
        result = self.evaluate(expr, scope)
        return isinstance(result, celpy.celtypes.BoolType) and bool(result)


@dataclass
class _Wait:
    run: Run
    hashed: str
    event: str
    expression: str | None
    deadline: float


@dataclass
class Run:
    id: str
    fn: _Fn
    event: dict[str, Json]
    status: str = "running"
    output: Json = None
    error: Json = None
    memos: dict[str, Json] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    planned: list[str] = field(default_factory=list)
    waits: set[str] = field(default_factory=set)
    edge_attempt: int = 0
    disable_immediate: bool = False
    requests: int = 0
    handler_seconds: float = 0.0
    request_seconds: list[float] = field(default_factory=list)
    request_cpu: list[float] = field(default_factory=list)
    """The SDK's CPU seconds per request (its thread's), which other load cannot inflate."""
    state_bytes: int = 0
    max_step_bytes: int = 0

    @property
    def steps(self) -> int:
        return len(self.memos)

    @property
    def step_names(self) -> list[str]:
        return [self.names.get(h, h) for h in self.stack]


class Executor:
    """Runs Inngest functions served at ``serve_url``; see the module docstring."""

    def __init__(
        self,
        serve_url: str,
        functions: Sequence[inngest.Function[Any]],
        *,
        limits: Limits = Limits(),
        response_lost: Iterable[str] = (),
        redeliver: Iterable[str] = (),
        redeliver_after: float = 0.1,
        before_call: Callable[[Run], Awaitable[None]] | None = None,
    ) -> None:
        self.serve_url = serve_url
        self.limits = limits
        self.fns = _configs(serve_url, functions)
        self.runs: list[Run] = []
        self.attempts: list[StepAttempt] = []
        self.events: list[dict[str, Json]] = []
        self.violations: list[str] = []
        self.clock = 0.0
        self._lose = set(response_lost)
        self._redeliver = set(redeliver)
        self._redeliver_after = redeliver_after
        self._before_call = before_call
        self.cel = Cel()
        self._waits: list[_Wait] = []
        self._seen_ids: dict[str, float] = {}
        self._idempotency: dict[tuple[str, str], float] = {}
        self._intake_lock = threading.Lock()
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self._sems: dict[tuple[str, int, str], asyncio.Semaphore] = {}
        self._loop = asyncio.get_running_loop()
        self._http = httpx.AsyncClient(timeout=120)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self._http.aclose()

    # -- events ------------------------------------------------------------------

    def mount_event_api(self, app: fastapi.FastAPI) -> None:
        """Serve ``POST /e/{key}`` (Inngest's event API) for the SDK's ``send``."""

        @app.post("/e/{key}")
        async def receive(request: fastapi.Request) -> fastapi.Response:
            body = await request.json()
            try:
                ids = self.intake(body if isinstance(body, list) else [body])
            except EventRejected as exc:
                return fastapi.responses.JSONResponse({"error": str(exc)}, status_code=400)
            return fastapi.responses.JSONResponse({"ids": ids, "status": 200})

    def intake(self, events: list[dict[str, Json]]) -> list[str]:
        """Accept events from any thread; they are dispatched on the executor's loop."""
        for e in events:
            size = len(json.dumps(e, separators=(",", ":")).encode())
            if size > self.limits.max_event:
                problem = f"event {e.get('name')} is {size} bytes"
                self.violations.append(problem)
                raise EventRejected(problem)
        with self._intake_lock:
            ids = [str(e.setdefault("id", "") or uuid.uuid4().hex) for e in events]
            for e, i in zip(events, ids, strict=True):
                e["id"] = i
            self._inflight += 1
        self._loop.call_soon_threadsafe(self._dispatch, events)
        return ids

    async def send(self, *events: inngest.Event | Mapping[str, Json]) -> list[str]:
        raw = [_event_dict(e) for e in events]
        for e in raw:
            e.setdefault("ts", int(time.time() * 1000))
            if not e.get("id"):
                e.pop("id", None)
        return self.intake(raw)

    def _dispatch(self, events: list[dict[str, Json]]) -> None:
        try:
            for event in events:
                self._accept(event)
        finally:
            with self._intake_lock:
                self._inflight -= 1

    def _accept(self, event: dict[str, Json]) -> None:
        self.events.append(event)
        seen = self._seen_ids.get(event["id"])
        if seen is not None and self.clock - seen < DEDUPE_SECONDS:
            return  # Inngest drops an event whose id it saw within 24 hours
        self._seen_ids[event["id"]] = self.clock
        for wait in list(self._waits):
            scope = {"event": wait.run.event, "async": event}
            if wait.event == event["name"] and self.cel.true(wait.expression, scope):
                self._waits.remove(wait)
                self._resolve(wait, event)
        for fn in self.fns.values():
            for name, expression in fn.triggers:
                if name == event["name"] and self.cel.true(expression, {"event": event}):
                    self._start(fn, event)
                    break

    # -- runs --------------------------------------------------------------------

    def _start(self, fn: _Fn, event: dict[str, Json]) -> Run | None:
        if fn.idempotency is not None:
            key = (fn.id, str(self.cel.evaluate(fn.idempotency, {"event": event})))
            seen = self._idempotency.get(key)
            if seen is not None and self.clock - seen < DEDUPE_SECONDS:
                return None
            self._idempotency[key] = self.clock
        run = Run(id=f"run-{len(self.runs) + 1:05d}", fn=fn, event=event)
        run.disable_immediate = bool(self._redeliver)
        run.state_bytes = len(json.dumps(event))
        self.runs.append(run)
        self._schedule(run)
        return run

    def _schedule(self, run: Run) -> None:
        run.status = "running"
        task = self._loop.create_task(self._drive(run))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(task.exception())  # type: ignore[arg-type]

    async def _drive(self, run: Run) -> None:
        while run.status == "running":
            await self._advance(run)

    async def _advance(self, run: Run) -> None:
        target = run.planned[0] if run.planned else None
        try:
            resp = await self._deliver(run, target)
        except httpx.TransportError as exc:
            await self._on_error(run, target, None, repr(exc))
            return
        if len(resp.content) > self.limits.max_response:
            problem = f"response body is {len(resp.content)} bytes"
            self.violations.append(f"{run.id} ({run.fn.id}): {problem}")
            self._fail(run, {"name": "LimitExceeded", "message": problem})
            return
        if resp.status_code == 206:
            self._on_ops(run, resp.json())
        elif resp.status_code == 200:
            run.status, run.output = "completed", resp.json()
        else:
            await self._on_error(run, target, resp, resp.text)

    async def _deliver(self, run: Run, target: str | None) -> httpx.Response:
        """One delivery, or, for a step named in ``redeliver``, two at once."""
        name = run.names.get(target, "") if target else ""
        if name not in self._redeliver:
            return await self._call(run, target, run.disable_immediate)
        self._redeliver.discard(name)
        first = asyncio.ensure_future(self._call(run, target, True))
        await asyncio.sleep(self._redeliver_after)
        # The server gave up waiting for the first delivery and sends the step again;
        # the second holds no concurrency slot (the first still does).
        second = await self._call(run, target, True, limited=False)
        await first
        self._record(run, name, "lost")
        return second

    async def _call(
        self, run: Run, target: str | None, no_immediate: bool, *, limited: bool = True
    ) -> httpx.Response:
        body = {
            "event": run.event,
            "events": [run.event],
            "steps": run.memos,
            "ctx": {
                "run_id": run.id,
                "attempt": run.edge_attempt,
                "disable_immediate_execution": no_immediate,
                "max_attempts": run.fn.retries + 1,
                "use_api": False,
                "stack": {"stack": run.stack, "current": len(run.stack)},
            },
            "use_api": False,
        }
        if self._before_call is not None:
            await self._before_call(run)  # a test changes the world between requests
        params = {"fnId": run.fn.id, "stepId": target or "step"}
        headers = {"x-inngest-server-kind": "dev"}
        async with contextlib.AsyncExitStack() as stack:
            for sem in self._semaphores(run) if limited else ():
                await stack.enter_async_context(sem)
            started = time.perf_counter()
            resp = await self._http.post(self.serve_url, params=params, json=body, headers=headers)
            took = time.perf_counter() - started
            run.handler_seconds += took
            run.request_seconds.append(took)
            if (cpu := resp.headers.get(CPU_HEADER)) is not None:
                run.request_cpu.append(float(cpu))
            run.requests += 1
        return resp

    def _semaphores(self, run: Run) -> list[asyncio.Semaphore]:
        sems = []
        for i, (limit, key) in enumerate(run.fn.concurrency):
            value = "" if key is None else str(self.cel.evaluate(key, {"event": run.event}))
            sems.append(self._sems.setdefault((run.fn.id, i, value), asyncio.Semaphore(limit)))
        return sems

    # -- responses ---------------------------------------------------------------

    def _on_ops(self, run: Run, ops: list[dict[str, Json]]) -> None:
        outcomes = set()
        for op in ops:
            hashed = op["id"]
            run.names[hashed] = op.get("displayName") or op.get("name") or hashed
            outcomes.add(self._on_op(run, op, hashed))
            if run.status != "running":
                return
        if len(ops) > 1:
            run.disable_immediate = True  # as the server does once a run went parallel
        if "retry" in outcomes:
            return  # the same request goes again, one attempt later
        if "progress" in outcomes:
            run.edge_attempt = 0
        elif not run.planned:
            if all(op["id"] in run.memos for op in ops):
                return  # resolved while the request was out (a wait met its event): ask again
            if not run.waits:
                raise ExecutorError(f"{run.id} reported nothing new: {ops}")
            run.status = "waiting"

    def _on_op(self, run: Run, op: dict[str, Json], hashed: str) -> str:
        kind, name = op["op"], run.names[hashed]
        if kind in ("StepRun", "Step"):
            if name in self._lose:
                self._lose.discard(name)  # the step ran; its answer never arrives
                self._record(run, name, "lost")
                run.edge_attempt += 1
                return "retry"
            self._record(run, name, "ok")
            self._memoize(run, hashed, {"data": op.get("data")})
            return "progress"
        if kind == "StepError":
            delay = _retry_delay(None, run.edge_attempt)
            error = op.get("error") or {}
            detail = f"{error.get('name', '')}: {error.get('message', '')}"[:500]
            self._record(run, name, "error", delay, detail)
            run.edge_attempt += 1
            self.clock += delay
            return "retry"
        if kind == "StepFailed":
            self._record(run, name, "failed")
            self._memoize(run, hashed, {"error": op.get("error")})
            return "progress"
        if kind == "StepPlanned":
            if hashed in run.memos or hashed in run.planned:
                return "none"
            run.planned.append(hashed)
            run.disable_immediate = True
            return "progress"
        if kind == "WaitForEvent":
            return "progress" if self._register_wait(run, op, hashed) else "none"
        if kind == "Sleep":
            self._memoize(run, hashed, None)
            return "progress"
        raise ExecutorError(f"unsupported op {kind!r} in {run.id}")

    async def _on_error(
        self, run: Run, target: str | None, resp: httpx.Response | None, text: str
    ) -> None:
        no_retry = resp is not None and resp.headers.get("x-inngest-no-retry") == "true"
        delay = None if no_retry else _retry_delay(resp, run.edge_attempt)
        name = run.names.get(target, target) if target else await self._probe(run)
        body = _error_body(resp, text)
        detail = str(body.get("message", "") if isinstance(body, dict) else body)[:500]
        self._record(run, name, "non_retriable" if no_retry else "retry", delay, detail)
        if no_retry or run.edge_attempt >= run.fn.retries:
            self._fail(run, _error_body(resp, text))
            return
        run.edge_attempt += 1
        self.clock += delay or 0.0

    async def _probe(self, run: Run) -> str:
        """Which new step a failed discovery request was running (see module docstring)."""
        resp = await self._call(run, None, True)
        if resp.status_code == 206:
            for op in resp.json():
                if op["id"] not in run.memos:
                    return str(op.get("displayName") or op["id"])
        return "<function>"

    def _fail(self, run: Run, error: Json) -> None:
        run.status, run.error = "failed", error
        for hashed in run.waits:
            self._waits = [w for w in self._waits if not (w.run is run and w.hashed == hashed)]
        # Failure handlers are functions triggered by this event, like any other.
        data = {"error": error, "event": run.event, "function_id": run.fn.id, "run_id": run.id}
        self._accept({"name": FAILED_EVENT, "data": data, "id": f"failed-{run.id}", "ts": 0})

    # -- state -------------------------------------------------------------------

    def _memoize(self, run: Run, hashed: str, value: Json) -> None:
        size = len(json.dumps(value))
        run.memos[hashed] = value
        run.stack.append(hashed)
        if hashed in run.planned:
            run.planned.remove(hashed)
        run.state_bytes += size
        run.max_step_bytes = max(run.max_step_bytes, size)
        self._check_limits(run, hashed, size)

    def _check_limits(self, run: Run, hashed: str, size: int) -> None:
        problem = None
        if size > self.limits.max_step_output:
            problem = f"step {run.names.get(hashed, hashed)} output is {size} bytes"
        elif run.steps > self.limits.max_steps:
            problem = f"{run.steps} steps"
        elif run.state_bytes > self.limits.max_run_state:
            problem = f"run state is {run.state_bytes} bytes"
        if problem is not None:
            self.violations.append(f"{run.id} ({run.fn.id}): {problem}")
            self._fail(run, {"name": "LimitExceeded", "message": problem})

    def _register_wait(self, run: Run, op: dict[str, Json], hashed: str) -> bool:
        if hashed in run.memos or hashed in run.waits:
            return False
        opts = op.get("opts") or {}
        timeout = _duration(str(opts.get("timeout", "1d")))
        run.waits.add(hashed)
        self._waits.append(_Wait(run, hashed, op["name"], opts.get("if"), self.clock + timeout))
        return True

    def _resolve(self, wait: _Wait, event: dict[str, Json] | None) -> None:
        run = wait.run
        run.waits.discard(wait.hashed)
        self._memoize(run, wait.hashed, event)
        if run.status == "waiting":
            self._schedule(run)

    def _record(
        self, run: Run, step: str, outcome: str, delay: float | None = None, detail: str = ""
    ) -> None:
        self.attempts.append(
            StepAttempt(
                run.id, run.fn.id, step, run.edge_attempt, outcome, delay, self.clock, detail
            )
        )

    # -- driving -----------------------------------------------------------------

    async def run_until_idle(self, within: float = 60.0) -> None:
        """Run everything until no run can move; waits left then time out (virtually)."""
        deadline = self._loop.time() + within
        while True:
            if self._loop.time() > deadline:
                raise TimeoutError(f"runs still going after {within}s: {self.summary()}")
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=1.0)
            elif self._inflight:
                await asyncio.sleep(0.001)
            elif self._waits:
                first = min(self._waits, key=lambda w: w.deadline)
                self._waits.remove(first)
                self.clock = max(self.clock, first.deadline)
                self._resolve(first, None)
            else:
                break
        if self._errors:
            raise self._errors[0]
        if self.violations:
            raise LimitExceeded("; ".join(self.violations))

    # -- queries -----------------------------------------------------------------

    def runs_of(self, fn_suffix: str) -> list[Run]:
        return [r for r in self.runs if r.fn.id.endswith(fn_suffix)]

    def attempts_of(self, step: str) -> list[StepAttempt]:
        return [a for a in self.attempts if a.step == step]

    def summary(self) -> list[tuple[str, str, str, int]]:
        return [(r.id, r.fn.id, r.status, r.steps) for r in self.runs]


def _configs(url: str, functions: Sequence[inngest.Function[Any]]) -> dict[str, _Fn]:
    fns: dict[str, _Fn] = {}
    for fn in functions:
        config = fn.get_config(url)
        for cfg in (config.main, config.on_failure):
            if cfg is not None:
                fns[cfg.id] = _fn(cfg)
    return fns


def _fn(cfg: Any) -> _Fn:
    retries = cfg.steps["step"].retries
    return _Fn(
        id=cfg.id,
        triggers=tuple((t.event, t.expression) for t in cfg.triggers if hasattr(t, "event")),
        retries=4 if retries is None else retries.attempts,
        concurrency=tuple((c.limit, c.key) for c in cfg.concurrency or ()),
        idempotency=cfg.idempotency,
    )


def _event_dict(event: inngest.Event | Mapping[str, Json]) -> dict[str, Json]:
    if isinstance(event, inngest.Event):
        raw = event.to_dict()
        if isinstance(raw, Exception):
            raise raw
        return dict(raw)
    return dict(event)


def _retry_delay(resp: httpx.Response | None, attempt: int) -> float:
    value = resp.headers.get("retry-after") if resp is not None else None
    if value is None:
        return float(min(2**attempt, 60))  # the server's own backoff, roughly
    try:
        delay = float(value)
    except ValueError:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        delay = round((at - datetime.now(UTC)).total_seconds(), 1)
    return min(max(delay, MIN_RETRY_AFTER), MAX_RETRY_AFTER)  # the server's clamp


def _duration(text: str) -> float:
    units = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    return float(text[:-1]) * units[text[-1]]


def _error_body(resp: httpx.Response | None, text: str) -> Json:
    try:
        return resp.json() if resp is not None else {"message": text}
    except ValueError:
        return {"message": text}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(
    make: Callable[[inngest.Inngest], list[inngest.Function[Any]]], **executor_kw: Any
) -> AsyncIterator[Executor]:
    """Serve ``make(client)`` with ``inngest.fast_api.serve`` on uvicorn, yield an executor.

    The client runs in dev mode (no signatures) and sends its events to the executor's
    event API, mounted on the same server.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = inngest.Inngest(
        app_id="statesync-test", is_production=False, event_api_base_url=url, api_base_url=url
    )
    functions = make(client)
    app = fastapi.FastAPI()

    @app.middleware("http")
    async def handler_cpu(
        request: fastapi.Request, call_next: Callable[[fastapi.Request], Awaitable[Any]]
    ) -> Any:
        # One server thread runs every handler, so its CPU time is the handler's own.
        started = time.thread_time()
        response = await call_next(request)
        response.headers[CPU_HEADER] = f"{time.thread_time() - started:.6f}"
        return response

    inngest.fast_api.serve(app, client, functions)
    executor = Executor(f"{url}/api/inngest", functions, **executor_kw)
    executor.mount_event_api(app)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="inngest-sdk", daemon=True)
    thread.start()
    while not server.started:  # noqa: ASYNC110 - uvicorn only offers this flag
        await asyncio.sleep(0.01)
    try:
        yield executor
    finally:
        await executor.aclose()
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)
