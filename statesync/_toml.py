"""Reading a TOML configuration file, with errors that name the file (job, REST and
GraphQL configs share it)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from statesync.errors import ConfigurationError


def read_toml(
    path: str | Path, invalid: Callable[[str], Exception] | None = None
) -> dict[str, Any]:
    """The document at ``path``. A file that cannot be read is a ``ConfigurationError``
    naming it; one that is not TOML raises ``invalid(message)`` (default: a
    ``ConfigurationError`` "PATH: not valid TOML: ...")."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        message = f"not valid TOML: {exc}"
        if invalid is None:
            raise ConfigurationError(f"{path}: {message}") from None
        raise invalid(message) from None
