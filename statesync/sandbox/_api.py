"""The internal "API plugin" slot of the sandbox server.

The server owns the socket, the dataset, the fault injector and the request log.
Each emulated API (Stripe today; Close CRM at ``/api/v1/`` and GraphQL at
``/graphql`` later) is one :class:`ApiPlugin` that answers the paths under its
``prefix`` and creates the records of the entities it claims.  Plugins never
touch sockets, faults or the log, so a new API is a single module.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    from ._dataset import Dataset

JSONDict = dict[str, Any]


@attrs.frozen
class ApiRequest:
    """One parsed HTTP request, as handed to a plugin."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""


@attrs.frozen
class ApiResponse:
    """What a plugin answers; the server adds Content-Length and writes it."""

    status: int
    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content_type: str = "application/json"
    entity: str | None = None


class RecordMaker(Protocol):
    """Creates and edits the records of one entity, deterministically."""

    def make(self, index: int, created: int, rng: random.Random) -> JSONDict:
        """Build record number ``index``; must contain ``id`` and ``created``."""
        ...

    def touch(self, record: JSONDict, revision: int) -> None:
        """Apply an in-place update (``created`` and ``id`` must not change)."""
        ...


class ApiPlugin(Protocol):
    """An emulated API mounted under ``prefix`` (e.g. ``"/v1/"``)."""

    prefix: str

    def record_maker(self, entity: str) -> RecordMaker | None:
        """Return a maker if this API serves ``entity`` (first plugin wins)."""
        ...

    def handle(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        """Answer an authenticated request whose path starts with ``prefix``."""
        ...

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiResponse | None:
        """Return an error response when the request's credentials are wrong."""
        ...

    def error_response(self, status: int) -> ApiResponse:
        """An API-shaped error body for an injected status (429, 500, ...).

        The server adds the fault's headers (e.g. ``Retry-After``) itself.
        """
        ...

    def entity_of(self, path: str) -> str | None:
        """The entity a path refers to, for the request log."""
        ...


def json_response(status: int, payload: object, entity: str | None = None) -> ApiResponse:
    """Serialize compactly: the body is what clients parse in the benchmark loop."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return ApiResponse(status=status, body=body, entity=entity)


def extract_api_key(headers: Mapping[str, str]) -> str | None:
    """Read a key from ``Bearer <key>`` or HTTP basic auth with the key as user."""
    value = headers.get("Authorization") or headers.get("authorization")
    if not value:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, _ = decoded.partition(":")
        return user or None
    return None


def mask_key(key: str) -> str:
    """Stripe-style mask: keep the ``sk_test_`` prefix and the last 4 characters only."""
    if len(key) <= 8:
        return "****"
    parts = key.split("_")
    prefix = "_".join(parts[:2]) + "_" if len(parts) >= 3 and len(parts[0]) <= 3 else ""
    if len(prefix) + 4 >= len(key):
        prefix = ""
    return f"{prefix}****{key[-4:]}"


def key_fingerprint(key: str | None) -> str | None:
    """A short, non-reversible id for logs and per-key rate limits."""
    if key is None:
        return None
    return hashlib.sha256(key.encode()).hexdigest()[:12]
