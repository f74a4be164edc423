"""Optional backends: import what an extra brings if it is there, complain only on use.

A module that needs an extra wraps its third-party imports in :meth:`Extra.importing`
and calls :meth:`Extra.require` where it is first used (a constructor, a factory), so
every public module imports in a base install and the error names the extra to add.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from statesync.errors import MissingExtraError


class Extra:
    """One optional dependency of one feature, and whether importing it worked."""

    __slots__ = ("extra", "feature", "missing", "module")

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature, self.extra, self.module = feature, extra, module
        self.missing: ImportError | None = None

    @contextlib.contextmanager
    def importing(self) -> Iterator[None]:
        """Run the imports inside; an ImportError is kept for :meth:`require`."""
        try:
            yield
        except ImportError as exc:
            self.missing = exc

    @property
    def available(self) -> bool:
        return self.missing is None

    def require(self) -> None:
        """Raise :class:`MissingExtraError` naming the extra if the imports failed."""
        if self.missing is not None:
            raise MissingExtraError(self.feature, self.extra, self.module) from self.missing
