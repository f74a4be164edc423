"""The pytest plugin of :mod:`statesync.testing` (loaded through the ``pytest11`` entry
point): fixtures for connector contract suites."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from statesync.testing._crash import CrashResume, crash_then_resume


@pytest.fixture
def crash_resume(tmp_path: Path) -> Callable[..., CrashResume]:
    """:func:`~statesync.testing.crash_then_resume`, with ``{tmp}`` in arguments replaced
    by a fresh temporary directory (for ``--store`` and ``--dest`` paths)."""

    def run(run_args: Sequence[str], job_id: str, point: str, **kwargs: object) -> CrashResume:
        args = [a.replace("{tmp}", str(tmp_path)) for a in run_args]
        resume = [a.replace("{tmp}", str(tmp_path)) for a in kwargs.pop("resume_args", ())]  # type: ignore[attr-defined]
        return crash_then_resume(args, job_id, point, resume_args=resume, **kwargs)  # type: ignore[arg-type]

    return run
