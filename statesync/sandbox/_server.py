"""The HTTP layer (stdlib ``ThreadingHTTPServer``) and the public ``Sandbox``."""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from urllib.parse import parse_qsl, urlsplit

from ._api import ApiPlugin, ApiRequest, ApiResponse, JSONDict
from ._close import CloseApi
from ._config import SandboxConfig
from ._control import PREFIX, handle_control
from ._core import SandboxCore
from ._dataset import Where
from ._faults import FaultInjector
from ._graphql import GraphQLApi
from ._log import RequestLogEntry
from ._rest import RestApi
from ._stripe import StripeApi


def default_plugins() -> list[ApiPlugin]:
    """The APIs mounted by default: Stripe, Close CRM, GraphQL and the generic REST API."""
    return [StripeApi(), CloseApi(), GraphQLApi(), RestApi()]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], core: SandboxCore) -> None:
        self.core = core
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (a cancelled request) is not an error worth printing."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]

    def close_connections(self) -> None:
        """Unblock keep-alive handler threads so nothing is served after stop()."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately; without TCP_NODELAY the second
    # write can wait for a delayed ACK (~40 ms), ruining throughput.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: object) -> None:
        """Silence per-request stderr lines; the request log has everything."""

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        core = self.server.core
        response: ApiResponse | None
        if url.path.startswith(PREFIX):
            response = handle_control(core, method, url.path, body)
        else:
            request = ApiRequest(
                method=method,
                path=url.path,
                query=dict(parse_qsl(url.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            response = core.serve(request)
        if response is None:
            self.close_connection = True
            return
        self._write(response, include_body=method != "HEAD")

    def _write(self, response: ApiResponse, include_body: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if include_body:
            self.wfile.write(response.body)


class Sandbox:
    """A loopback HTTP server emulating APIs, with faults and mutations.

    >>> with Sandbox(SandboxConfig(sizes={"customers": 10})) as sandbox:
    ...     sandbox.url  # doctest: +SKIP
    'http://127.0.0.1:54321'
    """

    def __init__(
        self, config: SandboxConfig | None = None, *, plugins: Sequence[ApiPlugin] | None = None
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
        self._core = SandboxCore(self.config, plugins if plugins is not None else default_plugins())
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        """Bind (port 0 picks a free port) and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        self._server = _Server((self.config.host, self.config.port), self._core)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"statesync-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket and every open connection."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:54321``."""
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def faults(self) -> FaultInjector:
        return self._core.faults

    @property
    def entities(self) -> list[str]:
        return self._core.dataset.entities

    def log(self) -> list[RequestLogEntry]:
        """Every API request so far (control requests are not logged)."""
        return self._core.log.entries()

    def snapshot(self, entity: str) -> list[JSONDict]:
        """The live records of ``entity``, newest first, exactly as served."""
        return self._core.dataset.store(entity).snapshot()

    def insert(self, entity: str, count: int) -> list[str]:
        """Add ``count`` records newer than all existing ones; returns their ids."""
        return self._core.dataset.store(entity).insert(count)

    def update(
        self, entity: str, ids_or_count: Sequence[str] | int, where: Where = "head"
    ) -> list[str]:
        """Edit records in place (``where`` picks them when given a count)."""
        return self._core.dataset.store(entity).update(ids_or_count, where)

    def delete(
        self, entity: str, ids_or_count: Sequence[str] | int, where: Where = "head"
    ) -> list[str]:
        """Delete records; they stay valid as ``starting_after`` cursors."""
        return self._core.dataset.store(entity).delete(ids_or_count, where)

    def resize(self, entity: str, size: int) -> None:
        """Serve ``entity`` afresh with ``size`` records (one server for many data sets)."""
        self._core.dataset.resize(entity, size)

    def reset(self) -> None:
        """Fresh data, no faults, empty log."""
        self._core.reset()


def serve(
    config: SandboxConfig | None = None,
    *,
    ready: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives; ``ready`` gets the URL."""
    stop = stop if stop is not None else threading.Event()
    if threading.current_thread() is threading.main_thread():

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    with Sandbox(config) as sandbox:
        if ready is not None:
            ready(sandbox.url)
        while not stop.wait(0.5):
            pass
