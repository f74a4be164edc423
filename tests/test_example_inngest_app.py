"""examples/inngest_app.py reads Inngest's variables as the SDK documents them."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from statesync.errors import ConfigurationError

# Slow: whole syncs served over HTTP (outside the fast subset, -m 'not slow').
pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parents[1] / "examples" / "inngest_app.py"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    for name in ("INNGEST_DEV", "INNGEST_SIGNING_KEY", "INNGEST_SIGNING_KEY_FALLBACK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STATESYNC_API_KEY", "sk_test_example")
    monkeypatch.setenv("STATESYNC_DEST", str(tmp_path / "dest.db"))
    spec = importlib.util.spec_from_file_location("inngest_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("value", ["0", "false", "no", "off", ""])
def test_a_false_inngest_dev_is_cloud_mode_and_needs_the_signing_key(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("INNGEST_DEV", value)
    with pytest.raises(ConfigurationError, match="INNGEST_SIGNING_KEY"):
        example.inngest_client()
    monkeypatch.setenv("INNGEST_SIGNING_KEY", "signkey-prod-" + "ab" * 16)
    monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", "signkey-prod-" + "cd" * 16)
    client = example.inngest_client()
    assert client.is_production
    assert client.signing_key_fallback == "signkey-prod-" + "cd" * 16


@pytest.mark.parametrize("value", ["1", "true", "YES", "on", "http://127.0.0.1:8288"])
def test_a_true_inngest_dev_is_dev_mode(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("INNGEST_DEV", value)
    assert not example.inngest_client().is_production


def test_an_unreadable_inngest_dev_is_refused(
    example: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNGEST_DEV", "maybe")
    with pytest.raises(ConfigurationError, match="INNGEST_DEV"):
        example.inngest_client()


@pytest.fixture
def registrations() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for Inngest's registration endpoint (the one part that is remote)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            body = b'{"ok": true, "modified": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    thread.join(5)


def test_the_app_registers_under_inngest_serve_origin(
    example: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    registrations: tuple[str, list[dict[str, Any]]],
) -> None:
    api, seen = registrations
    monkeypatch.setenv("INNGEST_DEV", "1")
    monkeypatch.setenv("INNGEST_API_BASE_URL", api)
    monkeypatch.setenv("INNGEST_SERVE_ORIGIN", "https://sync.example.com")
    with TestClient(example.create_app(), base_url="http://10.0.0.7:8000") as http:
        resp = http.put("/api/inngest")
    assert resp.status_code == 200, resp.text
    (registration,) = seen
    assert registration["url"].startswith("https://sync.example.com/api/inngest")
    assert {f["id"] for f in registration["functions"]} == {
        "statesync-statesync-job",
        "statesync-statesync-entity",
        "statesync-statesync-entity-failure",
    }
