"""Fault injection: latency, rate limits, random errors, broken bodies, scripted rules."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from statesync.sandbox import FaultRule, FaultSettings, Sandbox, SandboxConfig
from support.sandbox_lib import AUTH


def _statuses(client: httpx.Client, count: int, path: str = "/v1/customers") -> list[int]:
    return [client.get(path).status_code for _ in range(count)]


def test_latency_is_added_to_api_requests(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.faults.configure(latency=0.2)
    started = time.monotonic()
    assert client.get("/v1/customers").status_code == 200
    assert time.monotonic() - started >= 0.2
    entry = sandbox.log()[-1]
    assert entry.ended - entry.started >= 0.2


def test_rate_limit_answers_429_with_retry_after(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.faults.configure(rate_limit=2, burst=3, retry_after=4)
    statuses = _statuses(client, 5)
    assert statuses == [200, 200, 200, 429, 429]
    response = client.get("/v1/customers")
    assert response.headers["Retry-After"] == "4"
    error = response.json()["error"]
    assert error["code"] == "rate_limit"
    assert error["type"] == "invalid_request_error"
    time.sleep(0.6)  # two tokens per second refill
    assert client.get("/v1/customers").status_code == 200
    assert [e.fault for e in sandbox.log()][:5] == [None, None, None, "rate_limit", "rate_limit"]


def test_rate_limit_is_per_key(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.faults.configure(rate_limit=1, burst=1)
    assert _statuses(client, 2) == [200, 429]
    other = httpx.get(f"{sandbox.url}/v1/customers", headers={"Authorization": "Bearer sk_x"})
    assert other.status_code == 401  # its own bucket still had a token


def test_error_rate_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[int]:
        with (
            Sandbox(SandboxConfig(sizes={"customers": 5}, seed=seed)) as sandbox,
            httpx.Client(base_url=sandbox.url, headers=AUTH) as http,
        ):
            sandbox.faults.configure(error_rate=0.3)
            return _statuses(http, 200)

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    failures = [s for s in first if s != 200]
    assert set(failures) == {500, 503}
    assert 30 <= len(failures) <= 90


@pytest.mark.parametrize("kind", ["malformed", "truncated", "missing_data"])
def test_broken_bodies(sandbox: Sandbox, client: httpx.Client, kind: str) -> None:
    sandbox.faults.configure(**{f"{kind}_rate": 1.0})
    response = client.get("/v1/customers", params={"limit": 5})
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    if kind == "missing_data":
        payload = response.json()
        assert payload["object"] == "list"
        assert "data" not in payload
    else:
        with pytest.raises(json.JSONDecodeError):
            response.json()
    if kind == "truncated":
        assert response.text.startswith('{"object":"list"')
    assert sandbox.log()[-1].fault == kind


def test_scripted_rule_fifth_customers_request_is_429(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    rule = FaultRule("/v1/customers", nth=5, status=429, headers={"Retry-After": "7"})
    sandbox.faults.add_rule(rule)
    client.get("/v1/invoices")  # other paths do not count
    assert _statuses(client, 6) == [200, 200, 200, 200, 429, 200]
    fifth = [e for e in sandbox.log() if e.path == "/v1/customers"][4]
    assert fifth.status == 429
    assert fifth.fault == "status"


def test_scripted_rule_headers_body_and_times(client: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(
        FaultRule(None, nth=2, times=3, status=503, headers={"X-Why": "maintenance"}, body="down")
    )
    responses = [client.get("/v1/products") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 503, 503, 503, 200]
    assert responses[1].text == "down"
    assert responses[1].headers["X-Why"] == "maintenance"


def test_default_error_body_for_rule_status(client: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(FaultRule("/v1/", nth=1, status=500))
    error = client.get("/v1/charges").json()["error"]
    assert error["type"] == "api_error"


def test_drop_closes_the_connection(client: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(FaultRule("/v1/customers", nth=2, kind="drop"))
    assert client.get("/v1/customers").status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/v1/customers")
    assert client.get("/v1/customers").status_code == 200  # a new connection works
    assert [e.status for e in sandbox.log()] == [200, 0, 200]


def test_retry_timing_is_visible_in_the_log(client: httpx.Client, sandbox: Sandbox) -> None:
    sandbox.faults.add_rule(
        FaultRule("/v1/customers", nth=1, status=429, headers={"Retry-After": "1"})
    )
    first = client.get("/v1/customers")
    time.sleep(float(first.headers["Retry-After"]))
    client.get("/v1/customers")
    refused, retried = sandbox.log()
    assert retried.started - refused.ended >= 1.0
    assert retried.wall_time - refused.wall_time >= 1.0


def test_faults_over_http_and_reset(sandbox: Sandbox, client: httpx.Client) -> None:
    payload = {
        "latency": 0.0,
        "error_rate": 0.0,
        "rules": [{"path_prefix": "/v1/charges", "nth": 1, "status": 502}],
        "mutations": [{"entity": "customers", "after_request": 1, "insert": 2}],
    }
    answer = client.post("/_sandbox/faults", json=payload)
    assert answer.status_code == 200
    assert answer.json()["rules"][0]["status"] == 502
    assert client.get("/v1/charges").status_code == 502
    assert len(sandbox.snapshot("customers")) == 252
    assert client.get("/_sandbox/faults").json()["rule_hits"] == [1]
    assert client.post("/_sandbox/faults", json={"nonsense": 1}).status_code == 400
    assert client.post("/_sandbox/faults", json={"error_rate": 2}).status_code == 400
    assert client.post("/_sandbox/reset").status_code == 200
    assert sandbox.faults.settings == FaultSettings()
    assert sandbox.faults.rules == []
    assert sandbox.log() == []
    assert len(sandbox.snapshot("customers")) == 250


def test_invalid_settings_are_rejected(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.faults.configure(error_rate=1.5)
    with pytest.raises(TypeError):
        sandbox.faults.configure(no_such_setting=1)
    with pytest.raises(ValueError):
        FaultRule(None, nth=0)
