"""A tiny, fast list server for the benchmarks: pages pre-encoded, so it measures the client.

    python bench/fast_server.py --records 100000     # prints its URL, serves until killed
    python bench/fast_server.py --records 50000 --latency 0.05 --rate-limit 100 --burst 20

It serves two list endpoints over HTTP/1.1 keep-alive (asyncio, one process of its own):

* Stripe style: ``GET /v1/customers?limit=100&starting_after=ID`` (newest first, the
  cursor is the last id of a page);
* Stripe style with ``created[gte|gt|lt|lte]`` filters (statesync's created-time windows,
  walked by cursor each): the page is the slice of the pre-encoded records the filter and
  cursor select (records' ``created`` falls by one a record), joined on first request and
  cached (not with ``--lazy``);
* Close style: ``GET /api/v1/lead/?_skip=S&_limit=L`` (ascending ``date_created``);
  ``contact/`` and ``opportunity/`` serve the same pages (several entities, one account).

Every page a walk with ``limit=100`` asks (Stripe by cursor; Close at ``_skip`` 0, 100,
200 ... and at the overlapping 99, 198 ... statesync's Close connector sends) is encoded
at start-up into the bytes written to the socket, response head included, and found by
one dict look-up. Any other page is built on demand and cached. ``GET /_cpu`` answers
the server's own CPU seconds, so the benchmark can print what serving cost.

``--lazy`` builds pages on request and keeps nothing (for 1M records, whose pre-encoded
pages would take most of a gigabyte); the server's CPU is then higher, not the client's.
Records are about 675 bytes of JSON each. The server does no auth and no validation: it
is a load generator, not an emulator (that is ``statesync.sandbox``).

Two options make it an API near its ceiling, for ``bench_throughput.py`` (both off by
default, as ``bench_sync.py`` runs it):

* ``--latency S``: every API answer is written S seconds after its request arrived, by
  a timer on the event loop (no thread, no CPU while waiting; requests on different
  connections wait concurrently, answers on one connection keep their order);
* ``--rate-limit R --burst B``: a token bucket per API key (the ``Authorization``
  header), decided on arrival as the emulator's fault injector does. A refusal is a
  429 the way ``statesync.sandbox`` answers it: Stripe's error JSON with ``Retry-After``
  (``--retry-after``, 1 s as the emulator's default); Close's ``{"error": ...}`` with
  ``Retry-After`` and ``RateLimit: limit=B, remaining=0, reset=S``. Every Close answer
  carries ``RateLimit`` (``remaining`` the whole tokens left, ``reset`` the seconds until
  the bucket is full), so the client's reading of reported quota is exercised too.

``GET /_stats`` answers the CPU seconds, the API requests served and how many of them
were refused (429).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import socket
import string
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

PAGE = 100
_ALPHABET = string.ascii_letters + string.digits
_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
_STATUS = len(b"HTTP/1.1 200 OK\r\n")
_MISSING = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"
_START = 1_700_000_000
_STRIPE_429 = (
    b'{"error":{"type":"invalid_request_error","message":"Request rate limit exceeded. '
    b'Learn more about rate limits here https://stripe.com/docs/rate-limits."}}'
)
_CLOSE_429 = (
    b'{"error":"Too many requests. Wait for the number of seconds in the RateLimit reset."}'
)
_CACHE_LIMIT = 2_000
"""Filtered Stripe pages kept (each about 68 kB, so 140 MB at most; a bench_throughput run
asks a few hundred); past it the cache starts over."""


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
        self._windows: dict[tuple[int, int, bool], bytes] = {}
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

    def _stripe_page(self, start: int, limit: int, *, more: bool | None = None) -> bytes:
        data = b",".join(self._records(start, start + limit, 0))
        more = start + limit < self.count if more is None else more
        url = b'"url":"/v1/customers"'
        has_more = b"true" if more else b"false"
        return self._respond(
            b'{"object":"list","data":[' + data + b'],"has_more":' + has_more + b"," + url + b"}"
        )

    def _close_page(self, skip: int, limit: int) -> bytes:
        data = b",".join(self._records(skip, skip + limit, 1))
        more = b"true" if skip + limit < self.count else b"false"
        total = b'"total_results":%d' % self.count
        return self._respond(b'{"has_more":' + more + b"," + total + b',"data":[' + data + b"]}")

    def stripe(self, query: dict[str, str]) -> bytes:
        limit, cursor = int(query.get("limit", 10)), query.get("starting_after", "")
        if any(k.startswith("created[") for k in query):
            return self._stripe_window(query, limit, cursor)
        page = self._stripe.get(cursor) if limit == PAGE else None
        if page is None:
            page = self._stripe_page(self._after(cursor), limit)
        return page

    def _after(self, cursor: str) -> int:
        """The index after the cursor record's: ids carry it (``cus_{count - i:08d}...``)."""
        return self.count - int(cursor[4:12]) + 1 if cursor else 0

    def _stripe_window(self, query: dict[str, str], limit: int, cursor: str) -> bytes:
        """A page of the records a ``created`` filter selects: record i was created at
        ``_START - i``, so every filter is a range of indices."""
        start, stop = self._after(cursor), self.count
        for op, edge in (("gte", 1), ("gt", 0), ("lte", 0), ("lt", 1)):
            raw = query.get(f"created[{op}]")
            if raw is None:
                continue
            index = _START - int(raw)  # the index of the record created at that second
            if op in ("gte", "gt"):
                stop = min(stop, index + edge)  # newer records only: lower indices
            else:
                start = max(start, index + edge)
        stop = max(start, stop)
        key = (start, min(start + limit, stop), start + limit < stop)
        page = self._windows.get(key)
        if page is None:
            page = self._stripe_page(start, key[1] - start, more=key[2])
            if not self.lazy:
                if len(self._windows) >= _CACHE_LIMIT:
                    self._windows.clear()
                self._windows[key] = page
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


class Limit:
    """A token bucket per API key: ``rate`` a second, at most ``burst`` at once."""

    def __init__(self, rate: float, burst: int, retry_after: int) -> None:
        self.rate, self.burst, self.retry_after = rate, burst, retry_after
        self._buckets: dict[bytes, tuple[float, float]] = {}

    def take(self, key: bytes) -> tuple[bool, float]:
        """Whether the key may have one more request now, and the tokens left after it."""
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) * self.rate)
        allowed = tokens >= 1.0
        tokens -= 1.0 if allowed else 0.0
        self._buckets[key] = (tokens, now)
        return allowed, tokens

    def quota(self, tokens: float) -> bytes:
        """Close's ``RateLimit`` header for a bucket holding ``tokens``."""
        reset = (self.burst - tokens) / self.rate
        remaining = math.floor(tokens)
        return b"RateLimit: limit=%d, remaining=%d, reset=%.3f\r\n" % (self.burst, remaining, reset)

    def refusal(self, close: bool, tokens: float) -> bytes:
        """The 429 the emulator answers: its body, ``Retry-After`` and (Close) quota."""
        body = _CLOSE_429 if close else _STRIPE_429
        quota = self.quota(tokens)  # under one token: remaining=0
        return (
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
            b"Retry-After: %d\r\n%sContent-Length: %d\r\n\r\n%s"
            % (self.retry_after, quota if close else b"", len(body), body)
        )


class Stats:
    """What ``/_stats`` reports besides CPU: API requests, 429s, distinct Stripe filters."""

    def __init__(self) -> None:
        self.requests = self.limited = 0
        self.filters: set[tuple[str | None, str | None]] = set()


Route = Callable[[bytes], tuple[bytes, bool]]
"""A request head to the bytes answered and whether they are an API answer (delayed)."""


class _Http(asyncio.Protocol):
    """HTTP/1.1 GETs without bodies, keep-alive; enough for httpx, aiohttp and the SDK.

    With ``latency`` an API answer waits on a loop timer. Answers of one connection
    queue in order with the time each is due; a timer writes every answer at the front
    that is due, so none overtakes another (HTTP/1.1 answers in request order).
    """

    def __init__(self, route: Route, latency: float) -> None:
        self.route, self.latency, self.buffer = route, latency, b""
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[float, bytes]] = deque()

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
            answer, delayed = self.route(head)
            delay = self.latency if delayed else 0.0
            if not delay and not self.waiting:
                self.transport.write(answer)
                continue
            loop = asyncio.get_running_loop()
            self.waiting.append((loop.time() + delay, answer))
            loop.call_later(delay, self._write_due)

    def _write_due(self) -> None:
        loop = asyncio.get_running_loop()
        now, wrote = loop.time(), False
        while self.waiting and self.waiting[0][0] <= now:
            answer, wrote = self.waiting.popleft()[1], True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(answer)
        if self.waiting and not wrote:
            # A timer may fire a clock tick early: come back when the front is due.
            loop.call_at(self.waiting[0][0], self._write_due)


def _api_key(head: bytes) -> bytes:
    """The ``Authorization`` header's value: the bucket a request counts against."""
    at = head.lower().find(b"\r\nauthorization:")
    if at < 0:
        return b""
    end = head.find(b"\r\n", at + 2)
    return head[at + 16 : end if end >= 0 else len(head)].strip()


def _json_answer(payload: object) -> bytes:
    body = json.dumps(payload).encode()
    return _HEAD % len(body) + body


_CLOSE_PATHS = ("/api/v1/lead/", "/api/v1/contact/", "/api/v1/opportunity/")


def make_router(pages: Pages, limit: Limit | None = None, stats: Stats | None = None) -> Route:
    stats = stats or Stats()

    def route(head: bytes) -> tuple[bytes, bool]:
        target = head.split(b" ", 2)[1]
        path, _, raw = target.decode("latin-1").partition("?")
        if path == "/_cpu":
            return _json_answer({"cpu": _cpu()}), False
        if path == "/_stats":
            payload = {
                "cpu": _cpu(),
                "requests": stats.requests,
                "limited": stats.limited,
                "filters": len(stats.filters),
            }
            return _json_answer(payload), False
        close = path in _CLOSE_PATHS
        if not close and path != "/v1/customers":
            return _MISSING, False
        stats.requests += 1
        quota = b""
        if limit is not None:
            allowed, tokens = limit.take(_api_key(head))
            if not allowed:
                stats.limited += 1
                return limit.refusal(close, tokens), True
            quota = limit.quota(tokens) if close else b""
        query = dict(parse_qsl(raw))
        if not close:
            stats.filters.add((query.get("created[gte]"), query.get("created[lt]")))
        page = pages.close(query) if close else pages.stripe(query)
        # The quota header goes right after the status line: the page bytes stay shared.
        return (page[:_STATUS] + quota + page[_STATUS:] if quota else page), True

    return route


async def serve(records: int, lazy: bool, latency: float, limit: Limit | None) -> None:
    pages = Pages(records, lazy=lazy)
    route = make_router(pages, limit)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(route, latency), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--lazy", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per API answer")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests/s per key")
    parser.add_argument("--burst", type=int, default=None, help="default: the rate, rounded")
    parser.add_argument("--retry-after", type=int, default=1, help="seconds, in a 429")
    args = parser.parse_args()
    limit = None
    if args.rate_limit is not None:
        burst = args.burst or max(1, round(args.rate_limit))
        limit = Limit(args.rate_limit, burst, args.retry_after)
    asyncio.run(serve(args.records, args.lazy, args.latency, limit))


if __name__ == "__main__":
    main()
