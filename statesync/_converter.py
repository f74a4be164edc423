"""The one cattrs converter used wherever values cross into storage (Redis, SQLite).

Loads tolerate unknown fields, so a record written by a newer statesync can still be
read by an older one during a rolling deploy.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Final, TypeVar

from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_structure_fn, override
from cattrs.preconf.json import make_converter

from statesync._frozen import FrozenDict
from statesync._models import ErrorInfo
from statesync.errors import ErrorKind, StoreError

T = TypeVar("T")

converter: Final = make_converter(forbid_extra_keys=False)
converter.register_unstructure_hook(datetime, lambda d: d.isoformat())
converter.register_structure_hook(datetime, lambda v, _: datetime.fromisoformat(v))
# Frozen mappings leave as plain dicts (their tuples as lists) and come back through the
# classes' converters, which freeze them again: checkpoints stored before keep loading.
converter.register_unstructure_hook(
    FrozenDict, lambda d: {k: converter.unstructure(v) for k, v in d.items()}
)
converter.register_structure_hook(FrozenDict, lambda v, _: FrozenDict(v))


def _stored_kind(value: str, _: object) -> ErrorKind:
    """A recorded error's kind. One this release does not know (written by a newer
    one during a rolling deploy) reads as ``internal``, which is not retried by default,
    rather than making the whole entity record unreadable."""
    try:
        return ErrorKind(value)
    except ValueError:
        return ErrorKind.INTERNAL


converter.register_structure_hook(
    ErrorInfo,
    make_dict_structure_fn(ErrorInfo, converter, kind=override(struct_hook=_stored_kind)),
)


def dumps(value: object) -> str:
    return json.dumps(converter.unstructure(value), separators=(",", ":"), sort_keys=True)


def loads(raw: str | bytes, cls: type[T]) -> T:
    try:
        return converter.structure(json.loads(raw), cls)
    except (BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"stored {cls.__name__} cannot be read: {exc}") from exc
