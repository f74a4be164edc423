"""SIGKILL a ``statesync run`` at a named point, then ``statesync resume`` it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from attrs import frozen

from statesync._failpoints import POINTS

STATESYNC = str(Path(sys.executable).with_name("statesync"))
"""The ``statesync`` command of the running interpreter's environment."""


@frozen
class CrashResume:
    """The killed run and the resume that followed it."""

    killed: subprocess.CompletedProcess[str]
    resumed: subprocess.CompletedProcess[str]

    @property
    def output(self) -> str:
        return "\n".join(
            (
                self.killed.stdout[-800:],
                self.killed.stderr[-800:],
                self.resumed.stdout[-2000:],
                self.resumed.stderr[-2000:],
            )
        )


def statesync(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the ``statesync`` command line with ``env`` laid over this environment."""
    return subprocess.run(
        [STATESYNC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def crash_then_resume(
    run_args: Sequence[str],
    job_id: str,
    point: str,
    *,
    resume_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: str | os.PathLike[str] | None = None,
) -> CrashResume:
    """Kill ``statesync run RUN_ARGS`` with SIGKILL the n-th time it passes ``point``
    (``"after_checkpoint:3"``; names in :data:`statesync._failpoints.POINTS`), then run
    ``statesync resume JOB_ID RESUME_ARGS`` without the crash point.

    Asserts that the kill happened (a point never reached is a broken test, not a pass)
    and that the resume exited 0; the caller checks the data.
    """
    name = point.partition(":")[0]
    assert name in POINTS, f"unknown crash point {name!r}; expected one of {POINTS}"
    killed = statesync(
        "run",
        *run_args,
        "--job-id",
        job_id,
        env={**(env or {}), "STATESYNC_CRASH_AT": point},
        timeout=timeout,
        cwd=cwd,
    )
    assert killed.returncode == -signal.SIGKILL, (
        f"crash point {point} was never reached: {killed.stdout[-500:]} {killed.stderr[-500:]}"
    )
    resumed = statesync(
        "resume",
        job_id,
        *resume_args,
        env={**(env or {}), "STATESYNC_CRASH_AT": ""},
        timeout=timeout,
        cwd=cwd,
    )
    outcome = CrashResume(killed, resumed)
    assert resumed.returncode == 0, outcome.output
    return outcome
