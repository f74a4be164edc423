"""The real stripe-python SDK (v16) lists through the sandbox."""

from __future__ import annotations

import pytest
import stripe

from statesync.sandbox import Sandbox, SandboxConfig
from support.sandbox_lib import API_KEY


def _client(sandbox: Sandbox, key: str = API_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": sandbox.url}, max_network_retries=0)


def test_sdk_lists_every_customer_with_starting_after() -> None:
    with Sandbox(SandboxConfig(sizes={"customers": 250})) as sandbox:
        client = _client(sandbox)
        ids: list[str] = []
        params: dict[str, object] = {"limit": 100}
        while True:
            page = client.v1.customers.list(params=params)  # type: ignore[arg-type]
            ids.extend(customer.id for customer in page.data)
            if not page.has_more:
                break
            params["starting_after"] = page.data[-1].id
        assert ids == [record["id"] for record in sandbox.snapshot("customers")]
        assert all(isinstance(c, stripe.Customer) for c in page.data)


def test_sdk_auto_paging_and_created_filter(sandbox: Sandbox) -> None:
    client = _client(sandbox)
    everything = sandbox.snapshot("invoices")
    threshold = everything[60]["created"]
    page = client.v1.invoices.list(params={"limit": 25, "created": {"gte": threshold}})
    served = [invoice.id for invoice in page.auto_paging_iter()]
    assert served == [r["id"] for r in everything if r["created"] >= threshold]


def test_sdk_sees_auth_and_rate_limit_errors(sandbox: Sandbox) -> None:
    with pytest.raises(stripe.AuthenticationError, match=r"sk_test_\*\*\*\*"):
        _client(sandbox, "sk_test_definitely_wrong").v1.customers.list()
    sandbox.faults.configure(rate_limit=1, burst=1, retry_after=3)
    client = _client(sandbox)
    client.v1.customers.list()
    with pytest.raises(stripe.RateLimitError):
        client.v1.customers.list()
