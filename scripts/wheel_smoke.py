"""Checks run inside a fresh virtual environment holding the built wheel (see wheel_smoke.sh).

``base``: every public module imports; each optional backend, when used, raises
MissingExtraError naming its extra; the parts with their own extra (the emulator,
statesync.testing) name it at import. ``commands``: prints every CLI command path, one a
line, for the shell to run ``--help`` on.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable, Iterator

# Parts installed by their own extra: importing them without it names the extra.
OWN_EXTRA = {"statesync.sandbox": "sandbox", "statesync.testing": "testing"}


def public_modules() -> Iterator[str]:
    import statesync

    yield "statesync"
    for info in pkgutil.walk_packages(statesync.__path__, "statesync."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield info.name


def _owner(name: str) -> str | None:
    return next((p for p in OWN_EXTRA if name == p or name.startswith(p + ".")), None)


def _backend_uses() -> dict[str, Callable[[], object]]:
    from statesync.adapters.inngest import job_requested
    from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity
    from statesync.connectors.stripe import StripeConnector
    from statesync.destinations.postgres import PostgresDestination
    from statesync.stores.redis import RedisStateStore

    query = "query($first: Int, $after: String) { a(first: $first, after: $after) { id } }"
    return {
        "redis": lambda: RedisStateStore.from_url("redis://127.0.0.1:1"),
        "postgres": lambda: PostgresDestination("postgresql://u@127.0.0.1:1/db"),
        "graphql": lambda: GraphQLConnector(
            "http://127.0.0.1:1/", entities={"a": GraphQLEntity(query=query, path="a")}
        ),
        "inngest": lambda: job_requested("stripe", ["customers"]),
        "stripe": lambda: StripeConnector("sk_test_smoke"),
    }


def _expect_missing(what: str, extra: str, call: Callable[[], object]) -> None:
    from statesync.errors import MissingExtraError

    try:
        call()
    except MissingExtraError as exc:
        if exc.extra != extra:
            sys.exit(f"{what}: MissingExtraError names {exc.extra!r}, not {extra!r}")
    else:
        sys.exit(f"{what}: no MissingExtraError in a base install")


def base() -> None:
    names = list(public_modules())
    for name in names:
        owner = _owner(name)
        if owner is None:
            importlib.import_module(name)
        elif name == owner:
            _expect_missing(name, OWN_EXTRA[owner], lambda n=name: importlib.import_module(n))
    for extra, use in _backend_uses().items():
        _expect_missing(f"the {extra} backend", extra, use)
    print(f"base: {len(names)} public modules; {len(_backend_uses())} backends name their extra")


def commands() -> None:
    import click

    from statesync._cli import main

    def walk(group: click.Group, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        for name, command in sorted(group.commands.items()):
            yield (*path, name)
            if isinstance(command, click.Group):
                yield from walk(command, (*path, name))

    for path in walk(main, ()):
        print(" ".join(path))


if __name__ == "__main__":
    {"base": base, "commands": commands}[sys.argv[1]]()
