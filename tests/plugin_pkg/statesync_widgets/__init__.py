"""The Widgets API connector (a plugin): cursor pages of ``/rest/cursor/<entity>``.

The factory takes the job's connector options (``base_url``, ``entities``,
``token_env``) and the environment, where the token (and, without ``base_url``, the
URL in ``WIDGETS_URL``) is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from statesync import BaseConnector, Page, PageRequest, Record
from statesync.errors import ConfigurationError, MalformedResponseError, error_for_status

__all__ = ["WidgetsConnector", "connector", "gadgets"]


class WidgetsConnector(BaseConnector):
    name = "widgets"

    def __init__(self, base_url: str, token: str, entities: Sequence[str]) -> None:
        self._base = base_url.rstrip("/")
        self._entities = tuple(entities)
        self._client = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"})

    @property
    def account(self) -> str:
        return f"widgets:{self._base}"

    def entities(self) -> Sequence[str]:
        return self._entities

    async def fetch_page(self, request: PageRequest) -> Page:
        params: dict[str, Any] = {"limit": request.page_size}
        if request.state.cursor:
            params["after"] = request.state.cursor
        url = f"{self._base}/rest/cursor/{request.entity}"
        response = await self._client.get(url, params=params)
        if not response.is_success:
            raise error_for_status(response.status_code, f"widgets HTTP {response.status_code}")
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise MalformedResponseError("no results list", request=url)
        cursor = (body.get("paging") or {}).get("next", {}).get("after")
        records = tuple(
            Record(
                id=item["id"],
                data=item,
                created_at=datetime.fromisoformat(item["created_at"]),
                updated_at=datetime.fromisoformat(item["updated_at"]),
            )
            for item in body["results"]
        )
        return Page(records=records, has_more=cursor is not None, next_cursor=cursor)

    async def aclose(self) -> None:
        await self._client.aclose()


def connector(options: Mapping[str, Any], env: Mapping[str, str]) -> WidgetsConnector:
    """The plugin factory: ``(options, env) -> connector``."""
    base = options.get("base_url") or env.get("WIDGETS_URL")
    if not isinstance(base, str):
        raise ConfigurationError("base_url: the widgets connector needs the API's URL")
    token_env = options.get("token_env", "WIDGETS_TOKEN")
    token = env.get(token_env)
    if not token:
        raise ConfigurationError(f"the widgets connector reads its token from {token_env}: unset")
    entities = options.get("entities") or ["widgets"]
    return WidgetsConnector(base, token, list(entities))


def gadgets(options: Mapping[str, Any], env: Mapping[str, str]) -> WidgetsConnector:
    """The same API under another connector name, registered nowhere (``module:factory``)."""
    built = connector(options, env)
    built.name = "gadgets"
    return built
