"""A tiny, fast list server for ``bench_sync.py``: pages pre-encoded, so it measures the client.

    python bench/fast_server.py --records 100000     # prints its URL, serves until killed

It serves two list endpoints over HTTP/1.1 keep-alive (asyncio, one process of its own):

* Stripe style: ``GET /v1/customers?limit=100&starting_after=ID`` (newest first, the
  cursor is the last id of a page);
* Close style: ``GET /api/v1/lead/?_skip=S&_limit=L`` (ascending ``date_created``).

Every page a walk with ``limit=100`` asks (Stripe by cursor; Close at ``_skip`` 0, 100,
200 ... and at the overlapping 99, 198 ... statesync's Close connector sends) is encoded
at start-up into the bytes written to the socket, response head included, and found by
one dict look-up. Any other page is built on demand and cached. ``GET /_cpu`` answers
the server's own CPU seconds, so the benchmark can print what serving cost.

``--lazy`` builds pages on request and keeps nothing (for 1M records, whose pre-encoded
pages would take most of a gigabyte); the server's CPU is then higher, not the client's.
Records are about 675 bytes of JSON each. The server does no auth, no rate limits, no
validation: it is a load generator, not an emulator (that is ``statesync.sandbox``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import socket
import string
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

PAGE = 100
_ALPHABET = string.ascii_letters + string.digits
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
_MISSING = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"
_START = 1_700_000_000


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(_ALPHABET, k=n))


def stripe_record(i: int, rng: random.Random, count: int) -> dict[str, Any]:
    """A Stripe customer of about 675 bytes; ids sort with creation, newest first."""
    first, last = rng.choice(("Ada", "Grace", "Alan", "Linus")), rng.choice(("Hopper", "Knuth"))
    return {
        "id": f"cus_{count - i:08d}{_token(rng, 14)}",
        "object": "customer",
        "address": {"city": "Springfield", "country": "US", "line1": f"{i} Main Street",
                    "line2": None, "postal_code": f"{10000 + i % 89999}", "state": "IL"},
        "balance": rng.randrange(-5000, 5000),
        "created": _START - i,
        "currency": "usd",
        "delinquent": rng.random() < 0.05,
        "description": f"Benchmark customer {i}",
        "discount": None,
        "email": f"{first.lower()}.{last.lower()}{i}@example.com",
        "invoice_prefix": _token(rng, 8).upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                             "footer": None, "rendering_options": None},
        "livemode": False,
        "metadata": {"bench_index": str(i), "segment": rng.choice(("smb", "mid", "ent"))},
        "name": f"{first} {last}",
        "next_invoice_sequence": rng.randrange(1, 50),
        "phone": f"+1555{rng.randrange(10**7):07d}",
        "preferred_locales": ["en"],
        "shipping": None,
        "tax_exempt": "none",
    }  # fmt: skip


def close_record(i: int, rng: random.Random) -> dict[str, Any]:
    """A Close lead of about 675 bytes, ascending by ``date_created`` (ties broken by id)."""
    day, sec = divmod(i, 86_400)
    created = f"2024-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}.000000+00:00"  # noqa: E501
    return {
        "id": f"lead_{i:08d}{_token(rng, 14)}",
        "display_name": f"Benchmark Lead {i}",
        "name": f"Benchmark Lead {i}",
        "description": "A lead generated for the client benchmark.",
        "url": f"https://example.com/{i}",
        "status_id": "stat_" + _token(rng, 20),
        "status_label": rng.choice(("Potential", "Qualified", "Customer", "Bad Fit")),
        "organization_id": "orga_" + _token(rng, 20),
        "created_by": "user_" + _token(rng, 20),
        "updated_by": "user_" + _token(rng, 20),
        "date_created": created,
        "date_updated": created,
        "html_url": f"https://app.close.com/lead/lead_{i:08d}/",
        "primary_email": f"lead{i}@example.com",
        "primary_phone": f"+1555{rng.randrange(10**7):07d}",
        "contacts": [],
        "tasks": [],
        "custom": {"source": rng.choice(("web", "referral", "event")), "score": i % 100},
    }


def _encoded(i: int, count: int) -> tuple[bytes, bytes]:
    """Record ``i`` of both styles, encoded (seeded by ``i``: the same in every mode)."""
    rng = random.Random(i)
    return _DUMPS(stripe_record(i, rng, count)).encode(), _DUMPS(close_record(i, rng)).encode()


_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


class Pages:
    """Page bytes (head and body) by request; pre-encoded, or built (and cached)."""

    def __init__(self, records: int, *, lazy: bool) -> None:
        self.count, self.lazy = records, lazy
        self._stripe: dict[str, bytes] = {}
        self._close: dict[tuple[int, int], bytes] = {}
        self._stripe_rec: list[bytes] = []
        self._close_rec: list[bytes] = []
        if not lazy:
            self._build()

    def _build(self) -> None:
        for i in range(self.count):
            stripe, close = _encoded(i, self.count)
            self._stripe_rec.append(stripe)
            self._close_rec.append(close)
        for start in range(0, self.count, PAGE):
            cursor = self._stripe_id(start - 1) if start else ""
            self._stripe[cursor] = self._stripe_page(start, PAGE)
            for skip in (start, max(0, start - start // PAGE)):
                self._close[(skip, PAGE)] = self._close_page(skip, PAGE)

    def _stripe_id(self, i: int) -> str:
        return json.loads(self._records(i, i + 1, 0)[0])["id"]  # type: ignore[no-any-return]

    def _records(self, start: int, stop: int, style: int) -> list[bytes]:
        stop = min(stop, self.count)
        if not self.lazy:
            return (self._stripe_rec, self._close_rec)[style][start:stop]
        return [_encoded(i, self.count)[style] for i in range(start, stop)]

    @staticmethod
    def _respond(body: bytes) -> bytes:
        return _HEAD % len(body) + body

    def _stripe_page(self, start: int, limit: int) -> bytes:
        data = b",".join(self._records(start, start + limit, 0))
        more = b"true" if start + limit < self.count else b"false"
        url = b'"url":"/v1/customers"'
        return self._respond(
            b'{"object":"list","data":[' + data + b'],"has_more":' + more + b"," + url + b"}"
        )

    def _close_page(self, skip: int, limit: int) -> bytes:
        data = b",".join(self._records(skip, skip + limit, 1))
        more = b"true" if skip + limit < self.count else b"false"
        total = b'"total_results":%d' % self.count
        return self._respond(b'{"has_more":' + more + b"," + total + b',"data":[' + data + b"]}")

    def stripe(self, query: dict[str, str]) -> bytes:
        limit, cursor = int(query.get("limit", 10)), query.get("starting_after", "")
        page = self._stripe.get(cursor) if limit == PAGE else None
        if page is None:
            # Ids carry their position: cus_{count - i:08d}...
            start = self.count - int(cursor[4:12]) + 1 if cursor else 0
            page = self._stripe_page(start, limit)
        return page

    def close(self, query: dict[str, str]) -> bytes:
        key = (int(query.get("_skip", 0)), int(query.get("_limit", 100)))
        page = self._close.get(key)
        if page is None:
            page = self._close_page(*key)
            if not self.lazy:
                self._close[key] = page
        return page


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Http(asyncio.Protocol):
    """HTTP/1.1 GETs without bodies, keep-alive; enough for httpx, aiohttp and the SDK."""

    def __init__(self, route: Callable[[bytes], bytes]) -> None:
        self.route, self.buffer = route, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        assert self.transport is not None
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self.transport.write(self.route(head.split(b" ", 2)[1]))


def make_router(pages: Pages) -> Callable[[bytes], bytes]:
    def route(target: bytes) -> bytes:
        path, _, raw = target.decode("latin-1").partition("?")
        query = dict(parse_qsl(raw))
        if path == "/v1/customers":
            return pages.stripe(query)
        if path == "/api/v1/lead/":
            return pages.close(query)
        if path == "/_cpu":
            body = json.dumps({"cpu": _cpu()}).encode()
            return _HEAD % len(body) + body
        return _MISSING

    return route


async def serve(records: int, lazy: bool) -> None:
    pages = Pages(records, lazy=lazy)
    route = make_router(pages)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(route), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--lazy", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.records, args.lazy))


if __name__ == "__main__":
    main()
