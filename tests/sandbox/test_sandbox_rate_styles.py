"""The emulator's rate-limit styles over real HTTP, each read back by its connector, and
the command-line flags that switch faults on at start."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from statesync import FetchState, PageRequest, SyncMode, rate_info_from_headers
from statesync.connectors.close import CloseConnector
from statesync.connectors.graphql import GraphQLConnector, GraphQLEntity
from statesync.connectors.stripe import StripeConnector
from statesync.errors import RateLimitedError
from statesync.sandbox import Sandbox, SandboxConfig
from statesync.sandbox._options import build_config, load_payload
from support.crash import STATESYNC
from support.sandbox_lib import AUTH

KEY = SandboxConfig().api_key


def request(entity: str) -> PageRequest:
    return PageRequest(entity, FetchState(), 5, None, SyncMode.FULL)


def test_stripe_style_is_a_429_with_retry_after_and_no_should_retry() -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 5})) as sb, httpx.Client(headers=AUTH) as http:
        sb.faults.configure(rate_limit=0.5, burst=1, retry_after=3)
        first = http.get(f"{sb.url}/v1/customers")
        refused = http.get(f"{sb.url}/v1/customers")
    assert first.status_code == 200 and "Retry-After" not in first.headers
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3"
    assert "Stripe-Should-Retry" not in refused.headers


def test_github_style_is_a_200_with_rate_limited_errors_and_epoch_reset() -> None:
    with Sandbox(SandboxConfig(sizes={"graphql.tickets": 5})) as sb, httpx.Client() as http:
        sb.faults.configure(rate_limit=0.5, burst=1, rate_limit_style="github")
        body = {"query": "{ __typename }"}
        headers = {"Authorization": f"Bearer {KEY}"}
        first = http.post(f"{sb.url}/graphql", json=body, headers=headers)
        refused = http.post(f"{sb.url}/graphql", json=body, headers=headers)
    assert first.status_code == 200 and first.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 200
    assert refused.json()["errors"][0]["type"] == "RATE_LIMITED"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset = int(refused.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3  # epoch seconds, within the 2 s window


@pytest.mark.parametrize("separator", [",", ";"])
def test_close_style_reports_the_quota_on_every_answer(separator: str) -> None:
    with Sandbox(SandboxConfig(sizes={"close.lead": 5})) as sb, httpx.Client() as http:
        sb.faults.configure(
            rate_limit=1, burst=2, rate_limit_style="close", rate_limit_separator=separator
        )
        answers = [http.get(f"{sb.url}/api/v1/lead/", auth=(KEY, "")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert all(separator in a.headers["RateLimit"] for a in answers)
    infos = [rate_info_from_headers(a.headers) for a in answers]
    assert [i.remaining for i in infos if i] == [1, 0, 0]
    assert all(i is not None and i.limit == 2 and 0 < (i.reset or 0) <= 2 for i in infos)


async def test_each_connector_reads_its_apis_refusal() -> None:
    sizes = {"customers": 5, "close.lead": 5, "graphql.tickets": 5}
    with Sandbox(SandboxConfig(sizes=sizes)) as sb:
        stripe = StripeConnector(KEY, base_url=sb.url)
        close = CloseConnector(KEY, base_url=f"{sb.url}/api/v1", entities=["lead"])
        tickets = GraphQLEntity(
            query='query($first: Int, $after: String) { workspace(slug: "acme") { '
            "tickets(first: $first, after: $after) { nodes { id } "
            "pageInfo { hasNextPage endCursor } } } }",
            path="workspace.tickets",
        )
        graphql = GraphQLConnector(
            f"{sb.url}/graphql",
            entities={"tickets": tickets},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        cases = [("stripe", stripe, "customers"), ("close", close, "lead"),
                 ("github", graphql, "tickets")]  # fmt: skip
        for style, conn, entity in cases:
            sb.faults.configure(rate_limit=0.25, burst=1, retry_after=2, rate_limit_style=style)
            page = await conn.fetch_page(request(entity))
            assert page.records
            if style != "stripe":
                assert page.rate is not None and page.rate.remaining == 0
            with pytest.raises(RateLimitedError) as info:
                await conn.fetch_page(request(entity))
            wait = info.value.retry_after
            assert wait is not None and 0 < wait <= (2 if style == "stripe" else 5), style
            await conn.aclose()


# -- switching faults on from the command line -------------------------------------------


def test_payloads_are_json_toml_or_a_file(tmp_path: Path) -> None:
    assert load_payload('{"rate_limit": 5}', flag="--faults") == {"rate_limit": 5}
    assert load_payload("rate_limit = 5\nburst = 2", flag="--faults") == {
        "rate_limit": 5,
        "burst": 2,
    }
    file = tmp_path / "faults.toml"
    file.write_text('[[rules]]\npath_prefix = "/v1/"\nnth = 2\nstatus = 503\n')
    assert load_payload(f"@{file}", flag="--faults")["rules"][0]["status"] == 503
    with pytest.raises(ValueError, match=r"--faults: .* neither JSON nor TOML"):
        load_payload("rate_limit = ", flag="--faults")
    with pytest.raises(ValueError, match="--faults: cannot read"):
        load_payload(f"@{tmp_path / 'missing'}", flag="--faults")


def test_flags_reach_every_config_field_and_fault_setting() -> None:
    config = build_config(
        SandboxConfig(),
        configs=['{"seed": 7, "created_step": 5}'],
        faults=[
            '{"latency": 0.01, "rules": [{"path_prefix": "/v1/", "nth": 1}]}',
            '{"rules": [{"path_prefix": "/v1/", "nth": 3}]}',
        ],
        named={"rate_limit": 5.0, "rate_limit_style": "github", "burst": None},
    )
    assert (config.seed, config.created_step) == (7, 5)
    assert config.faults["latency"] == 0.01 and config.faults["rate_limit"] == 5.0
    assert [r["nth"] for r in config.faults["rules"]] == [1, 3]  # appended, as over HTTP
    with pytest.raises(ValueError, match=r"unknown sandbox settings \['sead'\]"):
        build_config(SandboxConfig(), configs=['{"sead": 1}'])
    with pytest.raises(ValueError, match="unknown fault settings"):
        build_config(SandboxConfig(), faults=['{"ratelimit": 1}'])
    with pytest.raises(ValueError, match="rate_limit_style"):
        build_config(SandboxConfig(), named={"rate_limit_style": "twitter"})


def test_configured_faults_survive_a_reset() -> None:
    config = SandboxConfig(sizes={"customers": 3}, faults={"rate_limit": 0.5, "burst": 1})
    with Sandbox(config) as sb, httpx.Client(headers=AUTH) as http:
        sb.reset()
        statuses = [http.get(f"{sb.url}/v1/customers").status_code for _ in range(2)]
    assert statuses == [200, 429]


@pytest.mark.slow
def test_statesync_sandbox_help_documents_the_flags_and_refuses_bad_ones() -> None:
    shown = subprocess.run([STATESYNC, "sandbox", "--help"], capture_output=True, text=True)
    for flag in ("--faults", "--config", "--rate-limit", "--rate-limit-style", "--latency"):
        assert flag in shown.stdout
    assert "POST /_sandbox/faults" in shown.stdout
    bad = subprocess.run(
        [STATESYNC, "sandbox", "--port", "0", "--faults", json.dumps({"error_rate": 3})],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert "error_rate" in bad.stderr
