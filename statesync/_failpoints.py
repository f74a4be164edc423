"""Named crash points for the crash-resume tests: ``STATESYNC_CRASH_AT=point:n``.

When the variable is set, the ``n``-th pass through ``point`` kills the process with
SIGKILL: no cleanup, no flush, exactly what a power cut or an OOM kill leaves behind.
When it is unset (always, outside tests) :func:`crash_point` is one attribute check.
"""

from __future__ import annotations

import os
import signal
import warnings
from typing import Final

POINTS: Final = (
    "before_fetch",
    "after_fetch",
    "in_page_write",
    "after_page_write",
    "after_checkpoint",
    "before_transition",
    "after_transition",
    "in_finalize",
    "after_finalize",
)


def _parse(spec: str | None) -> tuple[str, int] | None:
    """The armed point, or ``None``. A bad spec only warns: a test knob must never make
    ``import statesync`` fail in a process that merely inherited the variable."""
    if not spec:
        return None
    point, _, nth = spec.partition(":")
    if point not in POINTS or not nth.isdigit():
        warnings.warn(
            f"STATESYNC_CRASH_AT={spec!r} ignored: expected one of {POINTS} then ':n'",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return point, int(nth)


_armed: Final = _parse(os.environ.get("STATESYNC_CRASH_AT"))
_seen: dict[str, int] = {}


def crash_point(point: str) -> None:
    if _armed is None or _armed[0] != point:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] == _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
