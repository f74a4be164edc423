"""Where a job's tables land: new jobs write into their connector's namespace.

Tests that read a destination table by name ask here, so the naming rule lives in one
place (:func:`statesync.default_namespace`, the prefix style of SQLite and memory).
"""

from __future__ import annotations

from statesync import default_namespace
from statesync._namespace import table_name


def table(entity: str, connector: str = "stripe") -> str:
    """The SQLite/memory table of ``entity`` for a job of ``connector`` by default."""
    return table_name(entity, default_namespace(connector))
