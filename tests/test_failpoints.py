"""The crash-point knob of the crash-resume tests never breaks ``import statesync``."""

from __future__ import annotations

import os
import subprocess
import sys


def _import_with(spec: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STATESYNC_CRASH_AT": spec}
    code = "import statesync, statesync._failpoints as f; print(f._armed)"
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_spec_warns_and_disarms() -> None:
    done = _import_with("bogus")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "STATESYNC_CRASH_AT='bogus' ignored" in done.stderr


def test_a_good_spec_arms_the_point() -> None:
    done = _import_with("after_checkpoint:3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "('after_checkpoint', 3)"
