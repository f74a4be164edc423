"""Transport-independent request pipeline: routing, faults, auth, mutations, log."""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Sequence

import attrs

from ._api import (
    ApiPlugin,
    ApiRequest,
    ApiResponse,
    RecordMaker,
    extract_api_key,
    json_response,
    key_fingerprint,
)
from ._config import SandboxConfig
from ._dataset import Dataset
from ._faults import FaultDecision, FaultInjector, MutationRule
from ._log import RequestLog, RequestLogEntry
from ._stripe import StripeApi, vanished_cursor

_HTML_ERROR = (
    b"<html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)


class NoPluginError(LookupError):
    """No mounted API claims an entity from the configuration."""


class SandboxCore:
    """Everything the server owns except the socket."""

    def __init__(self, config: SandboxConfig, plugins: Sequence[ApiPlugin]) -> None:
        self.config = config
        # Longest prefix first, so "/api/v1/" would win over a hypothetical "/api/".
        self.plugins = sorted(plugins, key=lambda p: len(p.prefix), reverse=True)
        self.dataset = Dataset(config.sizes, config.seed, self._maker, config.created_step)
        self.faults = FaultInjector(config.seed)
        self.faults.apply_json(config.faults)
        self.log = RequestLog()
        self._lock = threading.Lock()
        self._requests = 0

    def _maker(self, entity: str) -> RecordMaker:
        for plugin in self.plugins:
            maker = plugin.record_maker(entity)
            if maker is not None:
                return maker
        raise NoPluginError(f"no mounted API serves entity {entity!r}")

    def route(self, path: str) -> ApiPlugin | None:
        return next((p for p in self.plugins if path.startswith(p.prefix)), None)

    def reset(self) -> None:
        """Fresh data, no faults, empty log, request counter back to zero."""
        self.dataset.reset()
        self.faults.reset()
        self.faults.apply_json(self.config.faults)
        self.log.clear()
        with self._lock:
            self._requests = 0

    def serve(self, request: ApiRequest) -> ApiResponse | None:
        """Answer one API request; ``None`` means drop the connection unanswered."""
        started, wall = time.monotonic(), time.time()
        with self._lock:
            self._requests += 1
            number = self._requests
        latency = self.faults.settings.latency
        if latency > 0:
            time.sleep(latency)
        plugin = self.route(request.path)
        key_id = key_fingerprint(extract_api_key(request.headers))
        decision = self.faults.decide(request.path, key_id)
        served, decision = self._walk_modes(request, decision)
        response = self._answer(plugin, served, decision)
        self._run_mutations(number)
        entry = RequestLogEntry(
            started=started,
            ended=time.monotonic(),
            wall_time=wall,
            method=request.method,
            path=request.path,
            query=request.query,
            status=0 if response is None else response.status,
            entity=None if plugin is None else plugin.entity_of(request.path),
            key_id=key_id,
            fault=decision.kind,
            number=number,
        )
        self.log.append(entry)
        return response

    def _answer(
        self, plugin: ApiPlugin | None, request: ApiRequest, decision: FaultDecision
    ) -> ApiResponse | None:
        if decision.kind == "drop":
            return None
        if plugin is None:
            message = f"Unrecognized request URL ({request.method}: {request.path})."
            error = {"type": "invalid_request_error", "message": message}
            return json_response(404, {"error": error})
        if decision.kind in ("status", "rate_limit", "error"):
            return self._injected_status(plugin, decision)
        try:
            response = plugin.authenticate(request, self.config.api_key)
            if response is None:
                response = plugin.handle(request, self.dataset)
        except Exception:  # noqa: BLE001 - a plugin bug must be a 500, not a dead connection
            traceback.print_exc()
            return plugin.error_response(500)
        response = _corrupt(response, decision)
        if not decision.headers:
            return response
        # The quota headers of a rate-limit style ride on every answer.
        return attrs.evolve(response, headers={**response.headers, **decision.headers})

    def _walk_modes(
        self, request: ApiRequest, decision: FaultDecision
    ) -> tuple[ApiRequest, FaultDecision]:
        """Apply the walk modes: drop ignored parameters, refuse a hidden ``_skip`` cap.

        The log keeps the query as the client sent it, so tests see the filter sent.
        """
        walk = self.faults.walk
        served = attrs.evolve(request, query=walk.filtered(request.query))
        if decision.kind is None:
            decision = walk.decide(request.path, request.query) or decision
        if decision.kind is None and walk.vanished_cursors:
            decision = self._vanished_cursor(request) or decision
        return served, decision

    def _vanished_cursor(self, request: ApiRequest) -> FaultDecision | None:
        plugin = self.route(request.path)
        if not isinstance(plugin, StripeApi):
            return None
        entity = plugin.entity_of(request.path)
        if entity is None or entity not in self.dataset:
            return None
        body = vanished_cursor(self.dataset.store(entity), request.query)
        return None if body is None else FaultDecision("status", 400, {}, body.decode())

    @staticmethod
    def _injected_status(plugin: ApiPlugin, decision: FaultDecision) -> ApiResponse:
        if decision.body is not None:
            response = ApiResponse(decision.status, decision.body.encode())
        else:
            response = plugin.error_response(decision.status)
        if not decision.headers:
            return response
        return attrs.evolve(response, headers={**response.headers, **decision.headers})

    def _run_mutations(self, number: int) -> None:
        for rule in self.faults.due_mutations(number):
            if rule.entity not in self.dataset:
                # Reported, not raised: the request that triggered it has its answer ready.
                print(f"sandbox: mutation for unknown entity {rule.entity!r}", file=sys.stderr)
                continue
            apply_mutation(self.dataset, rule)


def apply_mutation(dataset: Dataset, rule: MutationRule) -> dict[str, list[str]]:
    """Apply a mutation rule; deletes run last so updates never hit a tombstone."""
    store = dataset.store(rule.entity)
    inserted = store.insert(rule.insert, rule.insert_where or "head") if rule.insert else []
    updated = store.update(rule.update, rule.where) if rule.update else []
    deleted = store.delete(rule.delete, rule.where) if rule.delete else []
    if rule.cursor:
        deleted += store.delete_last_served()
    return {"inserted": inserted, "updated": updated, "deleted": deleted}


def _corrupt(response: ApiResponse, decision: FaultDecision) -> ApiResponse:
    """Turn a real answer into the broken 200 the decision asks for."""
    if decision.kind == "malformed":
        return ApiResponse(200, _HTML_ERROR, entity=response.entity)
    if decision.kind == "truncated":
        cut = response.body[: max(1, len(response.body) // 2)]
        return ApiResponse(200, cut, entity=response.entity)
    if decision.kind == "missing_data":
        try:
            payload = json.loads(response.body)
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        payload.pop("data", None)
        payload.setdefault("object", "list")
        payload.setdefault("has_more", False)
        return json_response(200, payload, response.entity)
    return response
