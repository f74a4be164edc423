"""``/_sandbox/...`` control endpoints, for tests that drive a sandbox subprocess.

No authentication: the sandbox listens on loopback and exists for tests.

* ``GET  /_sandbox/faults``            current settings, rules, hit counts
* ``POST /_sandbox/faults``            JSON settings (replace) + rules/mutations (append);
  settings include the walk modes (:class:`WalkModes`: ``skip_cap``, ``ignore_params``)
* ``POST /_sandbox/reset``             fresh data, only the configured faults, empty log
* ``GET  /_sandbox/log``               the request log as a JSON list
* ``GET  /_sandbox/snapshot/{entity}`` live records as served
* ``POST /_sandbox/mutate``            ``{"entity", "insert", "update", "delete", "where"}``,
  also ``"cursor": true`` (delete the record the last page ended with) and
  ``"insert_where"`` (backdated inserts: ``"tail"`` or ``"random"``)
"""

from __future__ import annotations

import json
from typing import Any

from ._api import ApiResponse, json_response
from ._core import SandboxCore, apply_mutation
from ._dataset import UnknownEntityError
from ._faults import MutationRule

PREFIX = "/_sandbox/"


def _error(status: int, message: str) -> ApiResponse:
    return json_response(status, {"error": {"type": "sandbox_error", "message": message}})


def _parse(body: bytes) -> dict[str, Any]:
    payload = json.loads(body or b"{}")
    if not isinstance(payload, dict):
        raise ValueError("expected a JSON object")
    return payload


def handle_control(core: SandboxCore, method: str, path: str, body: bytes) -> ApiResponse:
    """Dispatch a control request; bad input answers 400, never raises."""
    action = path[len(PREFIX) :]
    try:
        return _dispatch(core, method, action, body)
    except UnknownEntityError as error:
        return _error(404, f"unknown entity {error.args[0]!r}")
    except (ValueError, TypeError) as error:
        return _error(400, str(error))


def _dispatch(core: SandboxCore, method: str, action: str, body: bytes) -> ApiResponse:
    if (method, action) == ("GET", "faults"):
        return json_response(200, core.faults.to_json())
    if (method, action) == ("POST", "faults"):
        payload = _parse(body)
        for mutation in payload.get("mutations", []):
            core.dataset.store(mutation.get("entity", ""))  # unknown entity -> 404
        core.faults.apply_json(payload)
        return json_response(200, core.faults.to_json())
    if (method, action) == ("POST", "reset"):
        core.reset()
        return json_response(200, {"reset": True})
    if (method, action) == ("GET", "log"):
        return json_response(200, [entry.to_json() for entry in core.log.entries()])
    if method == "GET" and action.startswith("snapshot/"):
        entity = action[len("snapshot/") :]
        return json_response(200, core.dataset.store(entity).snapshot())
    if (method, action) == ("POST", "mutate"):
        rule = MutationRule(after_request=0, **_parse(body))
        return json_response(200, apply_mutation(core.dataset, rule))
    return _error(404, f"unknown control endpoint {method} {PREFIX}{action}")
