"""Data changing while a sync runs: inserts, updates, deletes, scripted mutations."""

from __future__ import annotations

import httpx
import pytest

from statesync.sandbox import MutationRule, Sandbox, SandboxConfig
from support.sandbox_lib import walk


def test_insert_adds_newer_records_at_the_head(sandbox: Sandbox, client: httpx.Client) -> None:
    before = sandbox.snapshot("customers")
    new_ids = sandbox.insert("customers", 3)
    after = walk(client, "customers", limit=100)
    assert [r["id"] for r in after[:3]] == new_ids[::-1]
    assert after[3:] == before
    assert min(r["created"] for r in after[:3]) > before[0]["created"]
    assert all(r["id"].startswith("cus_") for r in after[:3])


def test_update_keeps_position_and_changes_content(sandbox: Sandbox) -> None:
    before = sandbox.snapshot("invoices")
    updated = sandbox.update("invoices", [before[5]["id"], before[9]["id"]])
    after = sandbox.snapshot("invoices")
    assert [r["id"] for r in after] == [r["id"] for r in before]
    assert updated == [before[5]["id"], before[9]["id"]]
    assert after[5]["metadata"]["sandbox_revision"] == "1"
    assert after[9]["metadata"]["sandbox_revision"] == "2"
    assert after[5]["created"] == before[5]["created"]
    assert after[4] == before[4]


@pytest.mark.parametrize(("where", "slice_"), [("head", slice(0, 4)), ("tail", slice(-4, None))])
def test_update_by_count(sandbox: Sandbox, where: str, slice_: slice) -> None:
    ids = {r["id"] for r in sandbox.snapshot("products")[slice_]}
    assert set(sandbox.update("products", 4, where=where)) == ids  # type: ignore[arg-type]


def test_random_choice_is_deterministic() -> None:
    def deleted(seed: int) -> list[str]:
        return Sandbox(SandboxConfig(seed=seed)).delete("charges", 5, where="random")

    assert deleted(3) == deleted(3)
    assert len(set(deleted(3))) == 5


def test_deleted_records_are_hidden_but_remain_cursors(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    before = sandbox.snapshot("customers")
    gone = before[10]["id"]
    sandbox.delete("customers", [gone])
    served = walk(client, "customers", limit=100)
    assert gone not in {r["id"] for r in served}
    assert len(served) == len(before) - 1
    page = client.get("/v1/customers", params={"limit": 3, "starting_after": gone}).json()
    assert page["data"] == before[11:14]
    page = client.get("/v1/customers", params={"limit": 3, "ending_before": gone}).json()
    assert page["data"] == before[7:10]
    assert client.get(f"/v1/customers/{gone}").status_code == 404
    with pytest.raises(KeyError):
        sandbox.update("customers", [gone])


def test_has_more_ignores_trailing_tombstones(sandbox: Sandbox, client: httpx.Client) -> None:
    everything = sandbox.snapshot("products")
    sandbox.delete("products", 5, where="tail")
    page = client.get("/v1/products", params={"limit": len(everything) - 5}).json()
    assert page["has_more"] is False
    assert page["data"] == everything[:-5]


def test_mutation_rule_fires_after_nth_request(sandbox: Sandbox, client: httpx.Client) -> None:
    before = sandbox.snapshot("customers")
    sandbox.faults.add_mutation(
        MutationRule("customers", after_request=2, insert=1, update=1, delete=1, where="tail")
    )
    first = client.get("/v1/customers", params={"limit": 100}).json()["data"]
    assert first == before[:100]
    client.get("/v1/charges")
    after = sandbox.snapshot("customers")
    assert len(after) == len(before)  # one inserted, one deleted
    assert after[0]["created"] > before[0]["created"]
    assert after[-1]["id"] == before[-2]["id"]
    assert after[-1]["metadata"].get("sandbox_revision") is None
    assert sandbox.faults.mutations == []


def test_control_mutate_and_snapshot(sandbox: Sandbox, client: httpx.Client) -> None:
    answer = client.post(
        "/_sandbox/mutate", json={"entity": "subscriptions", "insert": 2, "delete": 1}
    )
    assert answer.status_code == 200
    changed = answer.json()
    assert len(changed["inserted"]) == 2
    assert len(changed["deleted"]) == 1
    snapshot = client.get("/_sandbox/snapshot/subscriptions").json()
    assert snapshot == sandbox.snapshot("subscriptions")
    assert len(snapshot) == 91
    assert client.get("/_sandbox/snapshot/unicorns").status_code == 404
    assert (
        client.post("/_sandbox/mutate", json={"entity": "unicorns", "insert": 1}).status_code == 404
    )


def test_reset_restores_the_initial_data(sandbox: Sandbox) -> None:
    before = sandbox.snapshot("charges")
    sandbox.insert("charges", 4)
    sandbox.delete("charges", 10)
    sandbox.reset()
    assert sandbox.snapshot("charges") == before


def test_single_id_string_and_unknown_entities(sandbox: Sandbox, client: httpx.Client) -> None:
    target = sandbox.snapshot("customers")[0]["id"]
    assert sandbox.delete("customers", target) == [target]
    with pytest.raises(KeyError):
        sandbox.insert("unicorns", 1)
    bad = {"mutations": [{"entity": "unicorns", "after_request": 1, "insert": 1}]}
    assert client.post("/_sandbox/faults", json=bad).status_code == 404
    sandbox.faults.add_mutation(MutationRule("unicorns", after_request=0, insert=1))
    assert client.get("/v1/customers").status_code == 200  # still answered
