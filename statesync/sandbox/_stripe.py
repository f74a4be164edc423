"""Stripe-compatible list and retrieve endpoints (``GET /v1/{entity}[/{id}]``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from ._api import ApiRequest, ApiResponse, extract_api_key, json_response, mask_key
from ._dataset import Dataset, EntityStore, Page, UnknownRecordError
from ._stripe_records import StripeRecordMaker, object_name

_MISSING_KEY = (
    "You did not provide an API key. You need to provide your API key in the "
    "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). "
    "See https://stripe.com/docs/api#authentication for details."
)
_CREATED_OPS = ("gte", "gt", "lte", "lt")
_STATUS_ERRORS: Mapping[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Bad request."),
    401: ("invalid_request_error", "Unauthorized."),
    402: ("card_error", "The request failed."),
    404: ("invalid_request_error", "Not found."),
    409: ("idempotency_error", "Conflict."),
    429: (
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
    ),
}


class StripeError(ValueError):
    """A request error that becomes a Stripe error JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type

    def response(self, entity: str | None = None) -> ApiResponse:
        error: dict[str, str] = {"type": self.error_type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        if self.code is not None:
            error["code"] = self.code
        return json_response(self.status, {"error": error}, entity)


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise StripeError(
            400, f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer"
        ) from None


def _limit(query: Mapping[str, str]) -> int:
    limit = _int_param(query, "limit")
    if limit is None:
        return 10
    if not 1 <= limit <= 100:
        raise StripeError(
            400,
            "Invalid limit: must be between 1 and 100",
            param="limit",
            code="parameter_invalid_integer",
        )
    return limit


def _cursor_position(store: EntityStore, query: Mapping[str, str], param: str) -> int:
    record_id = query[param]
    try:
        return store.position(record_id)
    except UnknownRecordError:
        raise StripeError(
            400,
            f"No such {object_name(store.name)}: '{record_id}'",
            param=param,
            code="resource_missing",
        ) from None


def vanished_cursor(store: EntityStore, query: Mapping[str, str]) -> bytes | None:
    """Stripe's 400 body when a cursor names a deleted record, else ``None``.

    The dataset keeps deleted records as tombstones that still work as cursors; the
    real API does not: its record is gone, so is the cursor (``resource_missing``).
    """
    for param in ("starting_after", "ending_before"):
        record_id = query.get(param)
        if record_id is None or store.get(record_id) is not None:
            continue
        try:
            store.position(record_id)
        except UnknownRecordError:
            continue  # never existed: the API's own answer covers it
        error = StripeError(
            400,
            f"No such {object_name(store.name)}: '{record_id}'",
            param=param,
            code="resource_missing",
        )
        return error.response(store.name).body
    return None


class StripeApi:
    """The Stripe plugin: claims every entity name that has no namespace dot."""

    prefix = "/v1/"

    def record_maker(self, entity: str) -> StripeRecordMaker | None:
        # Other APIs are expected to use namespaced entity names ("close.leads").
        return None if "." in entity else StripeRecordMaker(entity)

    def entity_of(self, path: str) -> str | None:
        parts = path[len(self.prefix) :].split("/")
        return parts[0] or None

    def authenticate(self, request: ApiRequest, api_key: str) -> ApiResponse | None:
        entity = self.entity_of(request.path)
        given = extract_api_key(request.headers)
        if given is None:
            return StripeError(401, _MISSING_KEY).response(entity)
        if given != api_key:
            message = f"Invalid API Key provided: {mask_key(given)}"
            return StripeError(401, message).response(entity)
        return None

    def error_response(self, status: int) -> ApiResponse:
        error_type, message = _STATUS_ERRORS.get(
            status, ("api_error", "An unknown error occurred in the sandbox.")
        )
        code = "rate_limit" if status == 429 else None
        return StripeError(status, message, code=code, error_type=error_type).response()

    def handle(self, request: ApiRequest, dataset: Dataset) -> ApiResponse:
        parts = request.path[len(self.prefix) :].split("/")
        entity = parts[0]
        try:
            if request.method != "GET" or len(parts) > 2 or entity not in dataset:
                raise StripeError(
                    404,
                    f"Unrecognized request URL ({request.method}: {request.path}). "
                    "Please see https://stripe.com/docs or we can help at "
                    "https://support.stripe.com/.",
                )
            store = dataset.store(entity)
            if len(parts) == 2:
                return self._retrieve(store, parts[1])
            return self._list(store, request.query)
        except StripeError as error:
            return error.response(entity or None)

    def _retrieve(self, store: EntityStore, record_id: str) -> ApiResponse:
        body = store.get(record_id)
        if body is None:
            raise StripeError(
                404,
                f"No such {object_name(store.name)}: '{record_id}'",
                param="id",
                code="resource_missing",
            )
        return ApiResponse(status=200, body=body, entity=store.name)

    def _list(self, store: EntityStore, query: Mapping[str, str]) -> ApiResponse:
        limit = _limit(query)
        created = {op: _int_param(query, f"created[{op}]") for op in _CREATED_OPS}
        if "created" in query:
            created["gte"] = created["lte"] = _int_param(query, "created")
        window = store.bounds(created["gte"], created["gt"], created["lte"], created["lt"])
        if "starting_after" in query and "ending_before" in query:
            raise StripeError(
                400,
                "You may only specify one of these parameters: ending_before, starting_after.",
                param="ending_before",
            )
        page: Page
        if "ending_before" in query:
            start = max(window.start, _cursor_position(store, query, "ending_before") + 1)
            page = store.page_newer(range(start, max(start, window.stop)), limit)
        else:
            stop = window.stop
            if "starting_after" in query:
                stop = min(stop, _cursor_position(store, query, "starting_after"))
            page = store.page_older(range(window.start, max(window.start, stop)), limit)
        return ApiResponse(status=200, body=self._list_body(store.name, page), entity=store.name)

    @staticmethod
    def _list_body(entity: str, page: Page) -> bytes:
        has_more = b"true" if page.has_more else b"false"
        return b"".join(
            (
                b'{"object":"list","url":',
                json.dumps(f"/v1/{entity}").encode(),
                b',"has_more":',
                has_more,
                b',"data":[',
                b",".join(page.items),
                b"]}",
            )
        )
