"""The listener shipped in the core: structured logging (the CLI's live progress bars are
:class:`statesync._cli._progress_display.ProgressDisplay`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from statesync._models import SyncState
from statesync._redact import redact
from statesync.events import (
    Event,
    JobFinished,
    PageWritten,
    RateLimitWait,
    RetryScheduled,
    TransitionEvent,
)


class LoggingListener:
    """Logs every event on the ``statesync`` logger, with its fields in ``extra``.

    Each record carries ``record.statesync`` (a dict: event name, job, entity and the
    event's own fields), so a JSON log formatter can emit them as they are. Messages
    and fields go through :func:`redact` with the ``secrets`` given, and known
    credential shapes are masked even when not given.
    """

    def __init__(
        self, logger: logging.Logger | None = None, *, secrets: Iterable[str] = ()
    ) -> None:
        self.logger = logger or logging.getLogger("statesync")
        self.secrets = tuple(secrets)

    def on_event(self, event: Event) -> None:
        level = _level(event)
        if not self.logger.isEnabledFor(level):
            return
        fields = _fields(event)
        message = redact(_message(event, fields), self.secrets)
        safe = {k: redact(v, self.secrets) if isinstance(v, str) else v for k, v in fields.items()}
        self.logger.log(level, message, extra={"statesync": safe})


def _level(event: Event) -> int:
    if isinstance(event, RetryScheduled):
        return logging.WARNING
    if isinstance(event, TransitionEvent) and event.dest is SyncState.FAILED:
        return logging.ERROR
    if isinstance(event, PageWritten):
        return logging.DEBUG
    return logging.INFO


def _fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"event": type(event).__name__}
    for name in event.__attrs_attrs__:
        value = getattr(event, name.name)
        if hasattr(value, "__attrs_attrs__"):  # ErrorInfo
            value = {"kind": value.kind, "message": value.message}
        elif isinstance(value, SyncState):
            value = value.value
        elif name.name == "states":
            value = {entity: state.value for entity, state in value}
        out[name.name] = value
    return out


def _message(event: Event, f: dict[str, Any]) -> str:
    if isinstance(event, TransitionEvent):
        why = f" ({event.error.kind}: {event.error.message})" if event.error else ""
        return (
            f"{event.entity}: {event.trigger} {event.source.value} -> {event.dest.value} "
            f"at chunk {event.chunk_index}{why}"
        )
    if isinstance(event, RetryScheduled):
        return (
            f"{event.entity}: chunk {event.chunk_index} attempt {event.attempt} failed "
            f"({event.cause.kind}: {event.cause.message}); retry in {event.delay:.2f}s"
        )
    if isinstance(event, RateLimitWait):
        return f"{event.entity}: waiting {event.delay:.2f}s for the API's rate limit"
    if isinstance(event, JobFinished):
        return f"job {event.job_id} finished: " + ", ".join(
            f"{e}={s.value}" for e, s in event.states
        )
    details = " ".join(f"{k}={v}" for k, v in f.items() if k not in ("event", "job_id"))
    return f"{f['event']} {details}"
