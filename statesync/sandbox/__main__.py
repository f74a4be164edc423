"""``python -m statesync.sandbox --port N --size customers=1000 --seed 1``.

Prints the base URL on stdout (one line, flushed) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._config import DEFAULT_SIZES, SandboxConfig
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
    args = parser.parse_args(argv)
    sizes = {} if args.only else dict(DEFAULT_SIZES)
    sizes.update(dict(args.size))
    return SandboxConfig(
        sizes=sizes, seed=args.seed, api_key=args.api_key, host=args.host, port=args.port
    )


def _announce(url: str) -> None:
    sys.stdout.write(url + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    serve(parse_args(argv), ready=_announce)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
