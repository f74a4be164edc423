"""A GraphQL endpoint at ``/graphql``, executed by graphql-core over the shared dataset.

Entities are ``graphql.tickets`` (a Relay connection under ``workspace(slug: "acme")``)
and ``graphql.articles`` (an offset list); add them to ``SandboxConfig.sizes``. Answers
follow common server practice: request errors (syntax, validation, variables) are a 400
with ``errors`` only, execution errors a 200 with ``data`` and ``errors``, every error
carrying ``extensions.code``; bad credentials are a 401 with ``UNAUTHENTICATED``.
:meth:`GraphQLApi.error_rule` scripts a GraphQL error for the n-th request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from graphql import ExecutionResult, GraphQLError, graphql_sync

from ._api import ApiRequest, ApiResponse, extract_api_key, json_response, mask_key
from ._dataset import Dataset
from ._faults import FaultRule
from ._graphql_schema import ARTICLES, TICKETS, GraphQLRecordMaker, build

PATH = "/graphql"
_STATUS_CODES: Mapping[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad request."),
    401: ("UNAUTHENTICATED", "Authentication required."),
    403: ("FORBIDDEN", "Forbidden."),
    404: ("NOT_FOUND", "Not found."),
    429: ("RATE_LIMITED", "Rate limit exceeded: slow down and retry later."),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable."),
}


class _RequestError(ValueError):
    """A request that cannot be executed at all (bad JSON, no query...)."""


def errors_body(message: str, code: str | None = None, **extensions: object) -> dict[str, Any]:
    """A GraphQL ``{"errors": [...]}`` body with one error."""
    error: dict[str, Any] = {"message": message}
    if code is not None or extensions:
        error["extensions"] = {**({"code": code} if code else {}), **extensions}
    return {"errors": [error]}


class GraphQLApi:
    """The GraphQL plugin: claims ``graphql.tickets`` and ``graphql.articles``."""

    prefix = PATH

    def __init__(self) -> None:
        self._schema = build()

    def record_maker(self, entity: str) -> GraphQLRecordMaker | None:
        return GraphQLRecordMaker(entity) if entity in (TICKETS, ARTICLES) else None

    def entity_of(self, path: str) -> str | None:
        return None  # one endpoint for every entity: the query is in the body

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiResponse | None:
        given = extract_api_key(request.headers)
        if given == api_key:
            return None
        message = (
            "Authentication required: send `Authorization: Bearer <token>`."
            if given is None
            else f"Invalid token: {mask_key(given)}"
        )
        return json_response(401, errors_body(message, "UNAUTHENTICATED"))

    def error_response(self, status: int) -> ApiResponse:
        code, message = _STATUS_CODES.get(
            status, ("INTERNAL_SERVER_ERROR", "An unknown error occurred in the sandbox.")
        )
        return json_response(status, errors_body(message, code))

    def handle(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        if request.path.rstrip("/") != PATH:
            return json_response(404, errors_body(f"no endpoint at {request.path}", "NOT_FOUND"))
        if request.method not in ("GET", "POST"):
            message = f"{request.method} is not allowed: use POST (or GET)"
            return json_response(405, errors_body(message, "METHOD_NOT_ALLOWED"))
        try:
            query, variables, operation = _params(request)
        except _RequestError as exc:
            return json_response(400, errors_body(str(exc), "BAD_REQUEST"))
        result = graphql_sync(
            self._schema,
            query,
            context_value=dataset,
            variable_values=variables,
            operation_name=operation,
        )
        return _answer(result)

    @staticmethod
    def error_rule(
        nth: int,
        message: str,
        code: str | None = None,
        *,
        times: int = 1,
        status: int = 200,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FaultRule:
        """A fault rule answering the ``nth`` GraphQL request with one GraphQL error.

        ``retry_after`` goes into ``extensions.retryAfter`` (the header, if wanted, into
        ``headers``): ``error_rule(2, "Slow down", "RATE_LIMITED", retry_after=3)``.
        """
        extra = {"retryAfter": retry_after} if retry_after is not None else {}
        body = json.dumps(errors_body(message, code, **extra), separators=(",", ":"))
        return FaultRule(
            path_prefix=PATH, nth=nth, times=times, status=status, headers=headers or {}, body=body
        )


def _params(request: ApiRequest) -> tuple[str, dict[str, Any] | None, str | None]:
    if request.method == "GET":
        payload: Any = dict(request.query)
        if "variables" in payload:
            payload["variables"] = _json(payload["variables"], "the variables parameter")
    else:
        payload = _json(request.body, "the POST body")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        raise _RequestError("the request has no query string")
    variables, operation = payload.get("variables"), payload.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        raise _RequestError("variables must be an object")
    if operation is not None and not isinstance(operation, str):
        raise _RequestError("operationName must be a string")
    return payload["query"], variables, operation


def _json(raw: str | bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise _RequestError(f"{what} is not JSON") from None


def _answer(result: ExecutionResult) -> ApiResponse:
    errors = [_formatted(e) for e in result.errors or ()]
    # Errors without a path never reached execution (syntax, validation, variables).
    if result.data is None and result.errors and all(e.path is None for e in result.errors):
        return json_response(400, {"errors": errors})
    payload: dict[str, Any] = {"data": result.data}
    if errors:
        payload["errors"] = errors
    return json_response(200, payload)


def _formatted(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        if error.path is None:
            extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
        elif not isinstance(error.original_error, GraphQLError):
            extensions["code"] = "INTERNAL_SERVER_ERROR"  # a resolver bug, shown as such
    if extensions:
        formatted["extensions"] = extensions
    return formatted
