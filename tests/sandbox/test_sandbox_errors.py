"""Auth and parameter errors use Stripe's error JSON; keys never leak."""

from __future__ import annotations

import base64

import httpx
import pytest

from statesync.sandbox import Sandbox
from support.sandbox_lib import API_KEY


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


def test_missing_key(sandbox: Sandbox) -> None:
    error = _error(httpx.get(f"{sandbox.url}/v1/customers"), 401)
    assert error["message"].startswith("You did not provide an API key.")


def test_wrong_key_is_masked(sandbox: Sandbox) -> None:
    secret = "sk_test_thisIsNotTheRightKeyXYZW"
    response = httpx.get(
        f"{sandbox.url}/v1/customers", headers={"Authorization": f"Bearer {secret}"}
    )
    error = _error(response, 401)
    assert error["message"] == "Invalid API Key provided: sk_test_****XYZW"
    assert secret not in response.text


def test_basic_auth_with_key_as_user(sandbox: Sandbox) -> None:
    token = base64.b64encode(f"{API_KEY}:".encode()).decode()
    response = httpx.get(f"{sandbox.url}/v1/customers", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200
    assert httpx.get(f"{sandbox.url}/v1/customers", auth=(API_KEY, "")).status_code == 200


@pytest.mark.parametrize("limit", ["0", "101", "-3", "abc", ""])
def test_bad_limit(client: httpx.Client, limit: str) -> None:
    error = _error(client.get("/v1/customers", params={"limit": limit}), 400)
    assert error["param"] == "limit"
    assert error["code"] == "parameter_invalid_integer"


def test_bad_created(client: httpx.Client) -> None:
    error = _error(client.get("/v1/customers", params={"created[gte]": "yesterday"}), 400)
    assert error["param"] == "created[gte]"


def test_unknown_entity_is_404(client: httpx.Client) -> None:
    error = _error(client.get("/v1/unicorns"), 404)
    assert "Unrecognized request URL (GET: /v1/unicorns)" in error["message"]
    assert client.get("/nowhere").status_code == 404
    assert client.post("/v1/customers").status_code == 404


def test_unknown_starting_after(client: httpx.Client) -> None:
    error = _error(client.get("/v1/customers", params={"starting_after": "cus_missing"}), 400)
    assert error["param"] == "starting_after"
    assert error["code"] == "resource_missing"
    assert error["message"] == "No such customer: 'cus_missing'"


def test_both_cursors_rejected(client: httpx.Client, sandbox: Sandbox) -> None:
    some_id = sandbox.snapshot("customers")[0]["id"]
    params = {"starting_after": some_id, "ending_before": some_id}
    assert _error(client.get("/v1/customers", params=params), 400)["param"] == "ending_before"


def test_key_never_in_log(sandbox: Sandbox, client: httpx.Client) -> None:
    wrong = "sk_test_anotherSecretValue9876"
    client.get("/v1/customers")
    httpx.get(f"{sandbox.url}/v1/customers", headers={"Authorization": f"Bearer {wrong}"})
    httpx.get(f"{sandbox.url}/v1/customers", auth=(API_KEY, ""))
    entries = sandbox.log()
    assert len(entries) == 3
    assert entries[0].key_id == entries[2].key_id != entries[1].key_id
    dumped = repr(entries) + httpx.get(f"{sandbox.url}/_sandbox/log").text
    for secret in (API_KEY, wrong, API_KEY[8:], wrong[8:]):
        assert secret not in dumped
