"""The ``statesync`` command line. Each command group lives in its own module."""

from __future__ import annotations

import click

from statesync._cli._contract import JsonGroup
from statesync._cli._diagram import diagram
from statesync._cli._gc import gc
from statesync._cli._jobs import cancel, demo, resume, run, sandbox
from statesync._cli._policy import policy
from statesync._cli._status import status


@click.group(cls=JsonGroup)
@click.version_option(package_name="statesync")
def main() -> None:
    """Resumable, observable, retry-safe chunked API syncs."""


for command in (demo, run, resume, status, cancel, gc, sandbox, diagram, policy):
    main.add_command(command)
