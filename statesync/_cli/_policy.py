"""``statesync policy``: check retry-policy files and show what each entity gets."""

from __future__ import annotations

import json
from typing import Any

import click

from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync._policy_config import (
    ENV_PREFIX,
    describe_resolved,
    known_from_names,
    load_policies,
    policies_from_env,
    policy_targets,
)
from statesync.errors import StatesyncError


@click.group()
def policy() -> None:
    """Retry and chunk policies (TOML files or STATESYNC_POLICY__* variables)."""


@policy.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--entity",
    "entities",
    multiple=True,
    help="connector.entity (or a connector) to show; repeat. Default: all the file names.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Connectors and entities not given with --entity are errors.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(file: str | None, entities: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Validate FILE (or the environment's STATESYNC_POLICY__* variables) and print the
    resolved policy of each entity."""
    known = known_from_names(entities) if strict else None
    try:
        policies = load_policies(file, known=known) if file else policies_from_env(known=known)
    except StatesyncError as exc:
        raise click.ClickException(str(exc)) from None
    targets = list(entities) or policy_targets(policies)
    resolved = {t: describe_resolved(*_policies_of(policies, t)) for t in targets}
    if as_json:
        click.echo(json.dumps(resolved, indent=2))
        return
    click.echo(f"{file or ENV_PREFIX + '*'}: valid")
    for target, described in resolved.items():
        click.echo(_text(target, described))


def _policies_of(policies: PolicySet, target: str) -> tuple[RetryPolicy, ChunkPolicy]:
    if target == "default":
        return policies.retry, policies.chunk
    connector, _, entity = target.partition(".")
    name = entity or None  # a bare connector name shows the connector's own level
    return policies.retry_for(connector, name), policies.chunk_for(connector, name)


def _text(target: str, described: dict[str, Any]) -> str:
    retry, chunk = described["retry"], described["chunk"]
    kinds = described["kinds"]
    lines = [
        target,
        "  retry: " + " ".join(f"{k}={_v(v)}" for k, v in retry.items()),
        "  kinds: " + ("; ".join(f"{k}: {v}" for k, v in kinds.items()) or "(none)"),
        "  chunk: " + " ".join(f"{k}={_v(v)}" for k, v in chunk.items()),
    ]
    return "\n".join(lines)


def _v(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
