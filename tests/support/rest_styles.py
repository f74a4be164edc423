"""REST entity tables for each paginator style the sandbox serves (shared by tests)."""

from __future__ import annotations

import copy
from typing import Any

WINDOW = {"window_lower_param": "created_gte", "window_upper_param": "created_lt"}
ISO = {"created_field": "created_at", "updated_field": "updated_at", "since_param": "since"}

STYLES: dict[str, dict[str, Any]] = {
    "offset": {
        "path": "/offset/issues",
        **ISO,
        **WINDOW,
        "page_size_param": "_limit",
        "paginator": {"type": "offset", "offset_param": "_start", "total_header": "X-Total-Count"},
    },
    "page": {
        "path": "/page/issues",
        **ISO,
        "records_path": "items",
        "page_size_param": "per_page",
        "paginator": {"type": "page_number", "total_path": "total"},
    },
    "cursor": {
        "path": "/cursor/issues",
        **ISO,
        **WINDOW,
        "records_path": "results",
        "paginator": {
            "type": "cursor",
            "cursor_param": "after",
            "cursor_path": "paging.next.after",
        },
    },
    "next": {
        "path": "/next/issues",
        **ISO,
        "records_path": "data",
        "paginator": {"type": "next_url", "next_url_path": "next_page"},
    },
    "link": {
        "path": "/link/issues",
        **ISO,
        **WINDOW,
        "page_size_param": "per_page",
        "paginator": {"type": "link_header"},
    },
    "search": {
        "path": "/search/issues",
        "method": "POST",
        "body": {"filter": {"state": "any"}},
        "records_path": "hits",
        "created_field": "created_ms",
        "time_format": "epoch_ms",
        "since_param": "since",
        "page_size_param": "limit",
        "paginator": {"type": "offset", "has_more_path": "has_more", "total_path": "total"},
    },
}
TOTALS = {"offset", "page", "search"}


def rest_options(base_url: str, style: str, **extra: Any) -> dict[str, Any]:
    """Connector options for one style's ``issues`` entity, keyed by $REST_TOKEN."""
    return {
        "base_url": f"{base_url}/rest",
        "auth": {"type": "bearer", "token_env": "REST_TOKEN"},
        "entities": {"issues": copy.deepcopy({**STYLES[style], **extra})},
    }
