"""Flags renamed so each word means one thing, still accepted for one release.

``--concurrency`` (entities at once) is ``--parallel-entities`` and
``--concurrency-pages`` (requests in flight per entity) is ``--pages-in-flight``. The
old spellings are rewritten to the new ones before click parses, with a warning on
stderr, so everything downstream (typed-flag detection, stored settings) sees one name.
"""

from __future__ import annotations

from typing import Any, Final

import click

RENAMED_FLAGS: Final = {
    "--concurrency": "--parallel-entities",
    "--concurrency-pages": "--pages-in-flight",
}
RENAMED_SETTINGS: Final = {
    "concurrency": "parallel_entities",
    "concurrency_pages": "pages_in_flight",
}
"""The same renames as stored in a job's settings by an older release."""


def renamed_args(args: list[str]) -> list[str]:
    """``args`` with deprecated flags (``--old V`` or ``--old=V``) under their new names;
    warns once per deprecated flag on stderr."""
    out: list[str] = []
    for arg in args:
        if arg == "--":
            out.extend(args[len(out) :])
            break
        flag, eq, value = arg.partition("=")
        new = RENAMED_FLAGS.get(flag)
        if new is None:
            out.append(arg)
            continue
        click.echo(f"warning: {flag} is deprecated, use {new}", err=True)
        out.append(f"{new}{eq}{value}")
    return out


class RenamedFlagsCommand(click.Command):
    """A command that still accepts the deprecated spellings of its renamed flags."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, renamed_args(args))


def renamed_settings(settings: Any) -> dict[str, Any]:
    """Stored settings with the keys an older release wrote under their new names."""
    if not isinstance(settings, dict):
        return {}
    return {RENAMED_SETTINGS.get(str(k), str(k)): v for k, v in settings.items()}
