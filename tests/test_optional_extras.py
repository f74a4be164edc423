"""Optional backends import in a base install and name their extra only when used.

Each case runs in a fresh interpreter whose import system refuses the extra's
packages (a ``sys.meta_path`` finder, the lowest layer), as a base install would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_BLOCKER = """
import sys

class _Absent:
    def __init__(self, names):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError("blocked: " + name, name=name)
        return None

sys.meta_path.insert(0, _Absent(BLOCKED))
"""

_CASES = {
    "redis": (
        {"redis"},
        "from statesync.stores.redis import RedisStateStore",
        "RedisStateStore.from_url('redis://127.0.0.1:1')",
    ),
    "postgres": (
        {"psycopg"},
        "from statesync.destinations.postgres import PostgresDestination",
        "PostgresDestination('postgresql://u@127.0.0.1:1/db')",
    ),
    "graphql": (
        {"gql", "graphql"},
        "from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity",
        "GraphQLConnector('http://127.0.0.1:1/graphql', entities={'a': GraphQLEntity("
        "query='query($first: Int, $after: String) { a(first: $first, after: $after) {"
        " edges { node { id } } pageInfo { hasNextPage endCursor } } }', path='a')})",
    ),
    "inngest": (
        {"inngest"},
        "from statesync.adapters.inngest import StepConflictError, job_requested",
        "job_requested('stripe', ['customers'])",
    ),
    # Parts of their own: the package itself names the extra at import.
    "sandbox": ({"graphql"}, "pass", "import statesync.sandbox"),
    "testing": ({"pytest"}, "pass", "import statesync.testing"),
    "stripe": (
        {"stripe"},
        "from statesync.connectors.stripe import StripeConnector",
        "StripeConnector('sk_test_x')",
    ),
}


def _run(blocked: set[str], body: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Not from the repository root: `-c` puts the working directory on sys.path, and
    # there ./statesync lacks the mapped connectors/ and adapters/.
    script = f"BLOCKED = {sorted(blocked)!r}\n" + _BLOCKER + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


@pytest.mark.parametrize("extra", sorted(_CASES))
def test_a_backend_imports_without_its_extra_and_names_it_on_use(
    extra: str, tmp_path: Path
) -> None:
    blocked, imports, use = _CASES[extra]
    body = f"""
    {imports}
    from statesync.errors import MissingExtraError
    try:
        {use}
    except MissingExtraError as exc:
        print("extra", exc.extra)
        print("message", exc)
    else:
        print("no error")
    """
    done = _run(blocked, body, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines.get("extra") == extra, done.stdout
    assert f"statesync[{extra}]" in lines["message"]


def test_with_the_extra_the_same_use_raises_nothing(tmp_path: Path) -> None:
    # The blocker is what makes the error: with nothing blocked, the graphql case builds.
    _, imports, use = _CASES["graphql"]
    done = _run(set(), f"{imports}\n{use}\nprint('built')", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "built"
