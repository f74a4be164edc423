"""The httpx client the Close and REST connectors make when none is passed in.

With ``statesync[aiohttp]`` installed it sends through aiohttp (``httpx-aiohttp``'s
transport): the same httpx API and exceptions, at about two thirds of the client CPU a
page of httpx's own transport (``bench/bench_sync.py``). Without it, plain httpx.
"""

from __future__ import annotations

import httpx


def default_client(timeout: float) -> httpx.AsyncClient:
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        return httpx.AsyncClient(timeout=timeout)
    return httpx.AsyncClient(transport=AiohttpTransport(), timeout=timeout)
