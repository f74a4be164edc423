"""Helpers shared by the sandbox tests (a uniquely named module, not ``conftest``)."""

from __future__ import annotations

from typing import Any

import httpx

from statesync.sandbox import SandboxConfig

API_KEY = SandboxConfig().api_key
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def walk(http: httpx.Client, entity: str, **params: str | int) -> list[dict[str, Any]]:
    """Follow ``starting_after`` until ``has_more`` is false; return every record."""
    records: list[dict[str, Any]] = []
    query: dict[str, str | int] = dict(params)
    while True:
        response = http.get(f"/v1/{entity}", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        records.extend(page["data"])
        if not page["has_more"]:
            return records
        query["starting_after"] = page["data"][-1]["id"]
