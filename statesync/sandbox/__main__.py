"""``python -m statesync.sandbox --port N --size customers=1000 --seed 1``.

Prints the base URL on stdout (one line, flushed) and serves until SIGTERM/SIGINT.
``--faults`` and the named fault flags start faults and rate limits switched on (the
settings ``POST /_sandbox/faults`` changes while it runs); ``--config`` sets any
``SandboxConfig`` field. Walk modes go in ``--faults`` too: ``skip_cap`` (a Close
``_skip`` cap the client is not told, answered with Close's 400), ``ignore_params``
(query filters the server drops, e.g. ``["created"]``), ``vanished_cursors`` (a deleted
Stripe cursor is a 400 ``resource_missing``); mutations take ``"cursor": true`` (delete
the record the last page ended with) and ``"insert_where"`` (backdated inserts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from statesync._sandbox_flags import NAMED_FAULTS, PAYLOAD_HELP

from ._config import DEFAULT_SIZES, SandboxConfig
from ._options import build_config
from ._server import serve


def _size(value: str) -> tuple[str, int]:
    entity, sep, count = value.partition("=")
    if not sep or not entity:
        raise argparse.ArgumentTypeError(f"expected ENTITY=COUNT, got {value!r}")
    try:
        return entity, int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"COUNT must be an integer in {value!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> SandboxConfig:
    parser = argparse.ArgumentParser(prog="python -m statesync.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=SandboxConfig().api_key)
    parser.add_argument(
        "--size",
        type=_size,
        action="append",
        default=[],
        metavar="ENTITY=COUNT",
        help="records per entity (repeatable); given sizes are added to the defaults",
    )
    parser.add_argument(
        "--only", action="store_true", help="serve only the entities given with --size"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="PAYLOAD",
        help=f"any SandboxConfig field ({PAYLOAD_HELP}); repeatable",
    )
    parser.add_argument(
        "--faults",
        action="append",
        default=[],
        metavar="PAYLOAD",
        help=f"a POST /_sandbox/faults body ({PAYLOAD_HELP}); repeatable, kept across resets",
    )
    for name, (kind, text) in NAMED_FAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=text)
    args = parser.parse_args(argv)
    sizes = {} if args.only else dict(DEFAULT_SIZES)
    sizes.update(dict(args.size))
    base = SandboxConfig(
        sizes=sizes, seed=args.seed, api_key=args.api_key, host=args.host, port=args.port
    )
    named = {name: getattr(args, name) for name in NAMED_FAULTS}
    try:
        return build_config(base, configs=args.config, faults=args.faults, named=named)
    except ValueError as exc:
        parser.error(str(exc))


def _announce(url: str) -> None:
    sys.stdout.write(url + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    serve(parse_args(argv), ready=_announce)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
