"""The pytest plugin of :mod:`statesync.testing` (loaded through the ``pytest11`` entry
point): fixtures for connector contract suites."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from statesync.testing._crash import CrashResume, crash_then_resume

CrashResumeRunner = Callable[..., CrashResume]


@pytest.fixture
def crash_resume(tmp_path: Path) -> CrashResumeRunner:
    """:func:`~statesync.testing.crash_then_resume`, with ``{tmp}`` in arguments replaced
    by a fresh temporary directory (for ``--store`` and ``--dest`` paths)."""

    def fill(args: Sequence[str]) -> list[str]:
        return [a.replace("{tmp}", str(tmp_path)) for a in args]

    def run(
        run_args: Sequence[str],
        job_id: str,
        point: str,
        *,
        resume_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> CrashResume:
        return crash_then_resume(
            fill(run_args), job_id, point, resume_args=fill(resume_args), env=env,
            timeout=timeout,
        )  # fmt: skip

    return run
