"""The command line's contract: exit codes, ``--json`` output (errors included).

Exit codes, decided from typed outcomes and exception types, never from message text:

* 0 every entity complete (or cancelled, for ``cancel``);
* 1 an entity failed;
* 2 usage or configuration error (click's convention), with nothing written;
* 3 interrupted: a stop, a lost lease, or the store or destination went away mid-run;
* 75 busy (``EX_TEMPFAIL``): another live worker drives the job or entity.

With ``--json`` a command prints exactly one JSON object on stdout, also when it fails:
``{"error": {"type", "message", "param"}, "exit_code"}``.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import click

from statesync._status import Outcome
from statesync.errors import (
    ConfigurationError,
    DestinationError,
    JobBusyError,
    StatesyncError,
    StoreError,
    UnknownJobError,
)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 3
EXIT_BUSY: Final = 75

_state = {"json": False}


def json_mode() -> bool:
    return _state["json"]


def emit(payload: Mapping[str, Any]) -> None:
    """Print one JSON object (the whole output of a ``--json`` command)."""
    click.echo(json.dumps(payload, indent=2, default=str))


class CommandError(click.ClickException):
    """A typed failure of a command: its exit code, and its JSON form under ``--json``."""

    def __init__(
        self,
        message: str,
        exit_code: int,
        kind: str,
        param: str | None = None,
        details: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.details = dict(details or {})
        # click declares exit_code a class variable; each error here has its own.
        setattr(self, "exit_code", exit_code)  # noqa: B010
        self.kind = kind
        self.param = param

    def show(self, file: Any = None) -> None:
        if json_mode():
            payload = error_payload(self.kind, self.format_message(), self.param, self.exit_code)
            payload["error"].update(self.details)
            emit(payload)
        else:
            super().show(file)


def error_payload(kind: str, message: str, param: str | None, code: int) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "param": param}, "exit_code": code}


def exit_code_for(exc: StatesyncError) -> int:
    if isinstance(exc, UnknownJobError | ConfigurationError):
        return EXIT_USAGE
    if isinstance(exc, JobBusyError):
        return EXIT_BUSY
    if isinstance(exc, StoreError | DestinationError):
        return EXIT_INTERRUPTED  # an outage: nothing failed, resume is the answer
    return EXIT_FAILED


def command_error(exc: StatesyncError, param: str | None = None) -> CommandError:
    details: dict[str, Any] = {}
    if isinstance(exc, JobBusyError):
        details["holders"] = {
            entity: {"owner": owner, "until": until}
            for entity, (owner, until) in exc.holders.items()
        }
    return CommandError(str(exc), exit_code_for(exc), type(exc).__name__, param, details)


def exit_for_outcomes(outcomes: Iterable[Outcome], interrupted: bool) -> int:
    seen = set(outcomes)
    if Outcome.FAILED in seen:
        return EXIT_FAILED
    if Outcome.BUSY in seen:
        return EXIT_BUSY
    if interrupted or seen & {Outcome.INTERRUPTED, Outcome.STALLED}:
        return EXIT_INTERRUPTED
    return EXIT_OK


def resume_hint(job_id: str, store: str, dest: str, extra: Sequence[str] = ()) -> str:
    """A command that resumes ``job_id`` as printed (same store and destination)."""
    words = ["statesync", "resume", job_id, "--store", store, "--dest", dest, *extra]
    return shlex.join(words)


class JsonGroup(click.Group):
    """Click's group, but under ``--json`` usage errors come out as one JSON object too."""

    def main(self, args: Sequence[str] | None = None, *rest: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv:
            return super().main(argv, *rest, **kw)
        _state["json"] = True
        kw["standalone_mode"] = False
        try:
            super().main(argv, *rest, **kw)
        except click.ClickException as exc:
            if isinstance(exc, CommandError):
                exc.show()
            else:
                param = _param_name(exc)
                emit(error_payload(type(exc).__name__, exc.format_message(), param, exc.exit_code))
            sys.exit(exc.exit_code)
        except click.Abort:
            emit(error_payload("Abort", "aborted", None, EXIT_INTERRUPTED))
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(EXIT_OK)


def _param_name(exc: click.ClickException) -> str | None:
    param = getattr(exc, "param", None)
    if isinstance(param, click.Parameter):
        opts = getattr(param, "opts", None)
        return str(opts[0]) if opts else param.name
    hint = getattr(exc, "param_hint", None)
    return str(hint) if hint else None
