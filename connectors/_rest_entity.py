"""REST entities and credentials: what an endpoint is and how to authenticate (values).

:class:`RESTEntity` checks the combinations that cannot work (a paginator that needs a
setting the entity lacks, a POST followed by URL) when it is built, so a bad table fails
at load, before any request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import attrs
from attrs import field, frozen

from statesync._frozen import EMPTY, FrozenDict, frozen_mapping
from statesync._models import JSON
from statesync.connectors._rest_http import TIME_FORMATS
from statesync.connectors._rest_paging import (
    LinkHeaderPaginator,
    NextURLPaginator,
    OffsetPaginator,
    PageNumberPaginator,
    Paginator,
)
from statesync.errors import ConfigurationError, ErrorKind

AuthType = Literal["none", "bearer", "basic", "api_key"]


def _strings(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return frozen_mapping(value)


def _kinds(value: Mapping[str, ErrorKind | str] | None) -> Mapping[str, ErrorKind]:
    return FrozenDict({k: ErrorKind(v) for k, v in (value or {}).items()})


@frozen
class RESTAuth:
    """How requests authenticate; holds environment variable *names*, never secrets.

    ``bearer``: ``Authorization: Bearer $token_env``. ``basic``: ``$username_env`` and
    ``$password_env`` (empty password when unset; Close-style keys go in the user name).
    ``api_key``: ``$token_env`` in the header ``header`` or, with ``query_param``, in the
    query string.
    """

    type: AuthType = "none"
    token_env: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    header: str | None = None
    query_param: str | None = None

    def __attrs_post_init__(self) -> None:
        needs = {"bearer": ("token_env",), "api_key": ("token_env",), "basic": ("username_env",)}
        for name in needs.get(self.type, ()):
            if not getattr(self, name):
                raise ConfigurationError(f"{name}: required for auth type {self.type!r}")
        if self.type == "api_key" and bool(self.header) == bool(self.query_param):
            raise ConfigurationError("api_key auth takes exactly one of header or query_param")

    def env_names(self) -> tuple[str, ...]:
        names = (self.token_env, self.username_env, self.password_env)
        return tuple(n for n in names if n)

    def resolve(self, env: Mapping[str, str]) -> _Credentials:
        """Read the secrets; a missing variable is a :class:`ConfigurationError`."""

        def read(key: str, required: bool = True) -> str:
            name = getattr(self, key)
            if not name:
                return ""
            value = env.get(name)
            if not value and required:
                raise ConfigurationError(
                    f"auth.{key}: environment variable {name} is not set (auth type {self.type!r})"
                )
            return str(value or "")

        if self.type == "bearer":
            token = read("token_env")
            return _Credentials(headers={"Authorization": f"Bearer {token}"}, secrets=(token,))
        if self.type == "basic":
            user, password = read("username_env"), read("password_env", required=False)
            return _Credentials(
                auth=(user, password), secrets=tuple(s for s in (user, password) if s)
            )
        if self.type == "api_key":
            token = read("token_env")
            if self.header:
                return _Credentials(headers={self.header: token}, secrets=(token,))
            return _Credentials(query={str(self.query_param): token}, secrets=(token,))
        return _Credentials()


@frozen
class _Credentials:
    headers: Mapping[str, str] = field(default=EMPTY, converter=_strings)
    query: Mapping[str, str] = field(default=EMPTY, converter=_strings)
    auth: tuple[str, str] | None = None
    secrets: tuple[str, ...] = ()


def _check_format(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in TIME_FORMATS:
        raise ValueError(f"{attribute.name}: expected one of {', '.join(TIME_FORMATS)}")


@frozen
class RESTEntity:
    """One list endpoint. Paths are relative to the connector's ``base_url``.

    ``params`` go in the query string, ``body`` is the JSON body of a ``POST``
    (pagination, since and window parameters go where ``params_in`` says: ``query`` for
    ``GET``, ``body`` for ``POST`` by default). ``records_path``: dotted path of the
    record list in the body (``""``: the body is the list). ``since_param``: the
    incremental filter on update time, sent as ``since_format``; with
    ``since_inclusive = false`` (an ``updated > x`` filter) the value sent is one unit
    earlier, so records updated exactly at the watermark are fetched again, not lost.
    ``window_lower_param`` (``created >=``) and ``window_upper_param`` (``created <``, or
    ``<=`` with ``window_upper_inclusive``), in ``window_format``, let the engine walk
    creation-time windows; ``earliest`` (Unix seconds) bounds the oldest window.
    ``error_path``: where an API puts errors in a 2xx body; ``error_code_path`` and
    ``error_kinds`` map its codes to error kinds (default ``bad_request``).
    """

    path: str
    paginator: Paginator = field(factory=LinkHeaderPaginator)
    method: Literal["GET", "POST"] = "GET"
    params: Mapping[str, JSON] = field(default=EMPTY, converter=frozen_mapping)
    body: Mapping[str, JSON] = field(default=EMPTY, converter=frozen_mapping)
    headers: Mapping[str, str] = field(default=EMPTY, converter=_strings)
    params_in: Literal["query", "body"] | None = None
    records_path: str = ""
    id_field: str = "id"
    created_field: str | None = None
    updated_field: str | None = None
    time_format: str = field(default="iso8601", validator=_check_format)
    page_size_param: str | None = "limit"
    max_page_size: int = field(default=100, validator=attrs.validators.ge(1))
    since_param: str | None = None
    since_format: str = field(default="iso8601", validator=_check_format)
    since_inclusive: bool = True
    window_lower_param: str | None = None
    window_upper_param: str | None = None
    window_format: str = field(default="epoch_s", validator=_check_format)
    window_upper_inclusive: bool = False
    newest_first: bool = False
    earliest: int | None = None
    error_path: str | None = None
    error_code_path: str | None = None
    error_kinds: Mapping[str, ErrorKind] = field(default=EMPTY, converter=_kinds)

    def __attrs_post_init__(self) -> None:
        for problem in _problems(self):
            raise ConfigurationError(problem)

    @property
    def where(self) -> Literal["query", "body"]:
        return self.params_in or ("body" if self.method == "POST" else "query")

    @property
    def windowed(self) -> bool:
        return self.window_lower_param is not None and self.window_upper_param is not None


def _problems(entity: RESTEntity) -> list[str]:
    out = []
    pager = entity.paginator
    if entity.method == "GET" and entity.body:
        out.append('body: only a POST sends a body; set method = "POST"')
    if entity.where == "body" and entity.method != "POST":
        out.append('params_in: "body" needs method = "POST"')
    if isinstance(pager, OffsetPaginator | PageNumberPaginator) and not entity.page_size_param:
        out.append(f"page_size_param: required by the {pager.type} paginator")
    if isinstance(pager, OffsetPaginator) and pager.anchored and not entity.created_field:
        out.append(
            "created_field: an anchored offset walk needs the records' creation time; "
            "set created_field, or paginator.anchored = false to accept shifts"
        )
    if isinstance(pager, OffsetPaginator) and pager.anchored and entity.newest_first:
        out.append("newest_first: an anchored offset walk needs the list oldest first")
    if (
        isinstance(pager, OffsetPaginator)
        and pager.max_offset is not None
        and (not entity.window_lower_param or not pager.anchored)
    ):
        out.append(
            "paginator.max_offset: walking past the cap needs window_lower_param "
            "and an anchored walk"
        )
    if isinstance(pager, NextURLPaginator | LinkHeaderPaginator) and entity.method == "POST":
        out.append(
            f"paginator: a {pager.type} paginator follows URLs with GET; use offset, "
            "page_number or cursor for a POST search"
        )
    if (entity.window_lower_param is None) != (entity.window_upper_param is None):
        out.append("window_lower_param, window_upper_param: set both or neither")
    if entity.windowed and not entity.created_field:
        out.append("created_field: creation-time windows need the records' creation time")
    return out
