"""Turning a connector's bug (an unexpected exception) into a typed, recorded error.

A ``KeyError`` in ``fetch_page`` is not a flaky API: it becomes an
:class:`~statesync.errors.InternalError` (kind ``internal``, not retried unless a policy
says so) that names the exception type and the last frame of its traceback, with any
credential-shaped text masked, so the entity fails with something an operator can act on.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from statesync._redact import redact
from statesync.errors import ConnectorError, InternalError, StatesyncError

_MAX_MESSAGE = 500


def last_frame(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    frame = frames[-1]
    return f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"


def _short(filename: str) -> str:
    """The path from the package folder on (site-packages paths say nothing useful)."""
    parts = Path(filename).parts
    return str(Path(*parts[-3:])) if len(parts) > 3 else filename


def internal_error(exc: Exception, what: str = "connector bug") -> InternalError:
    """The typed error for an unexpected exception raised by connector code."""
    name = type(exc).__name__
    frame = last_frame(exc)
    text = redact(str(exc))[:_MAX_MESSAGE]
    where = f" at {frame}" if frame else ""
    error = InternalError(
        f"{what}: {name}: {text}{where}", exception=name, frame=frame and redact(frame)
    )
    error.__cause__ = exc
    return error


def as_internal(exc: Exception) -> InternalError:
    """A bug met outside ``fetch_page`` (a connector's planning hooks, say) as an error
    the entity fails with; statesync's own errors (an outage) are re-raised untouched."""
    if isinstance(exc, StatesyncError):
        raise exc
    return internal_error(exc, "unexpected error in the chunk")


def bug_details(exc: ConnectorError) -> dict[str, str | None]:
    """The :class:`ErrorInfo` fields a connector's bug adds (its type and last frame)."""
    if isinstance(exc, InternalError):
        return {"exception": exc.exception, "frame": exc.frame}
    return {}
