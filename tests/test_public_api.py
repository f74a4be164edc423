"""Guards the public surface: sorted ``__all__``, everything in it importable."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PUBLIC = ["statesync", "statesync.sandbox", "statesync.testing", "statesync.connectors.rest"]


def _isort_key(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then functions: the order ruff's RUF022 keeps."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", PUBLIC)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(names) == len(set(names))
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing


def test_plugin_packages_are_namespaced_under_statesync() -> None:
    # connectors/ and adapters/ are top-level folders mapped into the package.
    connectors = importlib.import_module("statesync.connectors")
    adapters = importlib.import_module("statesync.adapters")
    assert connectors.__name__ == "statesync.connectors"
    assert adapters.__name__ == "statesync.adapters"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("connectors.stripe")


def test_every_error_derives_from_the_one_root() -> None:
    from statesync import errors

    classes = [
        v
        for v in vars(errors).values()
        if isinstance(v, type) and issubclass(v, BaseException) and v.__module__ == errors.__name__
    ]
    assert classes and all(issubclass(c, errors.StatesyncError) for c in classes)


# What `import statesync` must not load: the CLI's libraries, HTTP clients, SDKs and
# backend drivers all belong to the edges that use them.
EDGE_PACKAGES = {
    "click",
    "rich",
    "httpx",
    "httpcore",
    "stripe",
    "gql",
    "graphql",
    "redis",
    "psycopg",
    "inngest",
    "pytest",
}


def test_importing_statesync_loads_no_edge_package(tmp_path: Path) -> None:
    code = (
        "import sys, statesync\n"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
        "statesync.ProgressDisplay\n"
        "print('rich after ProgressDisplay:', 'rich' in sys.modules)\n"
    )
    # Not from the repository root, where ./statesync would shadow the installed layout.
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
    )
    *loaded, after = done.stdout.splitlines()
    assert "statesync" in loaded and "attrs" in loaded
    assert sorted(EDGE_PACKAGES & set(loaded)) == []
    # The lazy attribute does load the CLI's progress bars (the check above is not vacuous).
    assert after == "rich after ProgressDisplay: True"


def test_progress_display_lives_with_the_cli_and_stays_reachable() -> None:
    import statesync
    from statesync._cli._progress_display import ProgressDisplay

    assert statesync.ProgressDisplay is ProgressDisplay
    assert "ProgressDisplay" in dir(statesync)
    assert "ProgressDisplay" not in statesync.__all__  # a star import stays light
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = statesync.Nope
