"""State diagrams: generated from the machine, committed without drift, live per entity."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import statesync.diagram
from statesync import (
    TRANSITIONS,
    ChunkPolicy,
    EntityRecord,
    ErrorInfo,
    PageRequest,
    RetryPolicy,
    SyncMode,
    SyncState,
    TransitionDef,
    TransitionRecord,
)
from statesync._cli import main
from statesync.adapters.local import LocalRunner
from statesync.connectors.memory import MemoryConnector
from statesync.destinations.memory import MemoryDestination
from statesync.diagram import (
    MACHINE_FILES,
    EntityTrace,
    MissingProgramError,
    load_trace,
    machine_diagrams,
    render,
    safe_text,
    source_digest,
    svg_stamp,
    to_dot,
    to_mermaid,
    trace_from,
)
from statesync.errors import AuthError, ConfigurationError, ConnectorError, TransientError
from statesync.stores.sqlite import SQLiteStateStore

DIAGRAMS = Path(__file__).resolve().parent.parent / "diagrams"
HAS_DOT = shutil.which("dot") is not None
STATE_NAMES = {s.value for s in SyncState}
TRIGGERS = {t.trigger for t in TRANSITIONS}

# -- a small stateDiagram-v2 parser: every line must be one of these forms -------------

_ID = r"[a-z_]+"
_FORMS: dict[str, re.Pattern[str]] = {
    "comment": re.compile(r"%%.*"),
    "direction": re.compile(r"direction (LR|RL|TB|BT)"),
    "state": re.compile(rf'state "(?P<label>[^"]+)" as (?P<id>{_ID})'),
    "start": re.compile(rf"\[\*\] --> (?P<dest>{_ID})"),
    "end": re.compile(rf"(?P<source>{_ID}) --> \[\*\]"),
    "transition": re.compile(rf"(?P<source>{_ID}) --> (?P<dest>{_ID}) : (?P<label>[^;:]+)"),
    "classdef": re.compile(r"classDef (?P<name>\w+) [\w#:,.-]+"),
    "class": re.compile(rf"class (?P<ids>{_ID}(,{_ID})*) (?P<name>\w+)"),
    "note": re.compile(rf"note (right|left) of (?P<id>{_ID})"),
}


def parse_mermaid(text: str) -> dict[str, list[dict[str, Any]]]:
    """Group the lines of a stateDiagram-v2 by form; any unknown line fails the test."""
    lines = text.splitlines()
    assert lines[0] == "stateDiagram-v2"
    parsed: dict[str, list[dict[str, Any]]] = {form: [] for form in _FORMS}
    parsed["note_text"] = []
    in_note = False
    for raw in lines[1:]:
        line = raw.strip()
        if in_note:
            in_note = line != "end note"
            if in_note:
                parsed["note_text"].append({"text": line})
            continue
        form = next((f for f, rx in _FORMS.items() if rx.fullmatch(line)), None)
        assert form is not None, f"not a stateDiagram-v2 line: {raw!r}"
        match = _FORMS[form].fullmatch(line)
        assert match is not None
        parsed[form].append(match.groupdict())
        in_note = form == "note"
    assert not in_note, "unterminated note"
    return parsed


def test_mermaid_parses_and_names_every_state_and_trigger() -> None:
    parsed = parse_mermaid(to_mermaid())
    assert {s["id"] for s in parsed["state"]} == STATE_NAMES
    edges = {(t["source"], t["dest"], t["label"]) for t in parsed["transition"]}
    expected = {(s.value, (t.dest or s).value, t.trigger) for t in TRANSITIONS for s in t.sources}
    assert edges == expected
    assert {t["label"] for t in parsed["transition"]} == TRIGGERS
    assert parsed["start"] == [{"dest": "pending"}]
    assert {e["source"] for e in parsed["end"]} == {"complete", "cancelled"}


def test_dot_names_every_state_and_trigger() -> None:
    text = to_dot()
    assert text.count("{") == text.count("}")
    for state in STATE_NAMES:
        assert re.search(rf"^\s+{state} \[", text, re.M), state
    for trigger in TRIGGERS:
        assert f'label="{trigger}"' in text


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not installed (.ci/run installs it)")
@pytest.mark.parametrize("trace", [False, True])
def test_dot_renders_with_graphviz(trace: bool) -> None:
    source = to_dot(_sample_trace() if trace else None)
    done = subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert b"<svg" in done.stdout
    png = render("png")
    assert png.startswith(b"\x89PNG")


# -- the committed files ---------------------------------------------------------------


def test_committed_text_diagrams_match_the_machine() -> None:
    """Regenerate with: statesync diagram --write diagrams/"""
    for name, content in machine_diagrams(["mermaid", "dot"]).items():
        committed = DIAGRAMS / name
        assert committed.exists(), f"{committed} missing: run statesync diagram --write diagrams/"
        assert committed.read_bytes() == content, (
            f"{committed} drifted from statesync._machine: run statesync diagram --write diagrams/"
        )


def test_committed_svg_was_rendered_from_the_current_machine() -> None:
    svg = (DIAGRAMS / "entity_sync.svg").read_bytes()
    assert svg_stamp(svg) == source_digest(to_dot()), (
        "diagrams/entity_sync.svg drifted: run statesync diagram --write diagrams/"
    )
    for state in STATE_NAMES:
        assert f"<title>{state}</title>".encode() in svg


def test_every_committed_file_is_known() -> None:
    names = {p.name for p in DIAGRAMS.iterdir() if p.name != "README.md"}
    assert names == set(MACHINE_FILES)


def test_drift_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = TransitionDef("pause", (SyncState.FETCHING,), SyncState.PENDING, "paused")
    monkeypatch.setattr(statesync.diagram, "TRANSITIONS", (*TRANSITIONS, extra))
    drifted = machine_diagrams(["mermaid"])["entity_sync.mmd"]
    assert drifted != (DIAGRAMS / "entity_sync.mmd").read_bytes()
    assert b"fetching --> pending : pause" in drifted


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not installed (.ci/run installs it)")
def test_cli_write_regenerates_the_committed_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["diagram", "--write", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("entity_sync.mmd", "entity_sync.dot"):
        assert (tmp_path / name).read_bytes() == (DIAGRAMS / name).read_bytes()
    assert svg_stamp((tmp_path / "entity_sync.svg").read_bytes()) == source_digest(to_dot())


def test_missing_dot_is_a_configuration_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingProgramError, match="'dot'") as info:
        render("svg")
    assert isinstance(info.value, ConfigurationError)
    assert info.value.program == "dot"
    assert render("mermaid").startswith(b"stateDiagram-v2")  # text formats need nothing
    result = CliRunner().invoke(main, ["diagram", "--format", "png", "-o", "x.png"])
    assert result.exit_code == 1 and "'dot'" in result.output


# -- a live job ------------------------------------------------------------------------


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i:04d}", "updated_at": "2026-01-01T00:00:00+00:00"} for i in range(n)]


SECRET_LOOKING = "sk_live_" + "x" * 300


def _fault(request: PageRequest, call: int) -> ConnectorError | None:
    if request.entity != "invoices":
        return None
    if call in (3, 4):
        return TransientError("HTTP 503 upstream busy")
    # A long message, as an API might send: the diagram must truncate it.
    return AuthError("401 bad key " + "details " * 60) if call >= 7 else None


async def _failed_job(db: Path) -> tuple[str, SQLiteStateStore]:
    store = SQLiteStateStore(db)
    runner = LocalRunner(
        connector=MemoryConnector({"invoices": rows(100)}, fault=_fault),
        store=store,
        destination=MemoryDestination(),
        chunk_policy=ChunkPolicy(max_iterations=2, page_size=10),
        retry_policy=RetryPolicy(attempts=5, initial_delay=0.001, jitter=0),
    )
    result = await runner.sync(["invoices"])
    assert result.entities[0].state is SyncState.FAILED
    return result.job_id, store


async def test_live_diagram_highlights_the_failed_state(tmp_path: Path) -> None:
    job_id, store = await _failed_job(tmp_path / "state.db")
    trace = await load_trace(store, job_id, "invoices")
    await store.aclose()
    assert trace.state is SyncState.FAILED
    assert trace.failure is not None and trace.failure.error is not None
    assert trace.failure.error.kind == "auth"

    mermaid = to_mermaid(trace)
    parsed = parse_mermaid(mermaid)
    assert {"ids": "failed", "name": "failing"} in parsed["class"]
    labels = {(t["source"], t["dest"]): t["label"] for t in parsed["transition"]}
    x = "\N{MULTIPLICATION SIGN}"
    assert labels[("fetching", "fetching")] == f"retry_chunk {x}2 (transient {x}2)"
    assert labels[("fetching", "failed")] == f"fail {x}1 (auth {x}1)"
    assert labels[("fetching", "chunk_done")] == f"chunk_finished {x}2"
    assert labels[("pending", "failed")] == "fail"  # untaken edges keep the bare trigger
    note = [n["text"] for n in parsed["note_text"]]
    assert any("chunk 2" in line and "error kind auth" in line for line in note)
    assert all(len(line) <= 130 for line in note)
    assert any(line.endswith("…") for line in note)

    dot = to_dot(trace)
    failed_node = re.search(r"^\s+failed \[(.*)\];$", dot, re.M)
    assert failed_node is not None and "fillcolor" in failed_node.group(1)
    assert re.search(r"^\s+fetching -> failed \[.*#b30000", dot, re.M)
    complete_node = re.search(r"^\s+complete \[(.*)\];$", dot, re.M)
    assert complete_node is not None and "fillcolor" not in complete_node.group(1)


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz dot is not installed (.ci/run installs it)")
def test_cli_draws_a_live_job_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    job_id, store = asyncio.run(_failed_job(db))
    asyncio.run(store.aclose())
    args = ["diagram", "--job", job_id, "--entity", "invoices", "--store", f"sqlite:///{db}"]
    runner = CliRunner()
    text = runner.invoke(main, args)
    assert text.exit_code == 0, text.output
    assert "class failed failing" in text.output
    out = tmp_path / "live.svg"
    svg = runner.invoke(main, [*args, "-o", str(out)])
    assert svg.exit_code == 0, svg.output
    assert b"<svg" in out.read_bytes() and b"auth" in out.read_bytes()
    missing = runner.invoke(main, [*args[:3], "--entity", "nope", "--store", f"sqlite:///{db}"])
    assert missing.exit_code == 1


def test_secret_looking_text_is_cut_and_flattened() -> None:
    text = safe_text(f'key "{SECRET_LOOKING}"\nnext line; #1 {{x}}')
    assert len(text) <= 120 and "\n" not in text
    assert not set('"<>{};#') & set(text)


def _sample_trace() -> EntityTrace:
    record = EntityRecord("j", "e", SyncMode.FULL, state=SyncState.FETCHING, chunk_index=1)
    now = datetime.now(UTC)
    history = [
        TransitionRecord("start", SyncState.PENDING, SyncState.FETCHING, now, 0),
        TransitionRecord("chunk_finished", SyncState.FETCHING, SyncState.CHUNK_DONE, now, 1),
        TransitionRecord("next_chunk", SyncState.CHUNK_DONE, SyncState.FETCHING, now, 1),
    ]
    return trace_from(record, history)


def test_hostile_error_text_cannot_break_the_diagrams() -> None:
    now = datetime.now(UTC)
    nasty = 'end note\n%% x\nfailed --> [*]\n"}]; digraph x { a -> b } ' + SECRET_LOOKING
    error = ErrorInfo("auth", nasty, now)
    record = EntityRecord(
        "j", "e", SyncMode.FULL, state=SyncState.FAILED, attempts=1, last_error=error
    )
    history = [
        TransitionRecord("start", SyncState.PENDING, SyncState.FETCHING, now, 0),
        TransitionRecord("fail", SyncState.FETCHING, SyncState.FAILED, now, 0, error),
    ]
    trace = trace_from(record, history)
    parsed = parse_mermaid(to_mermaid(trace))
    assert len(parsed["note"]) == 1 and len(parsed["end"]) == 2
    assert all(len(n["text"]) <= 130 for n in parsed["note_text"])
    assert SECRET_LOOKING not in to_dot(trace)
    if HAS_DOT:
        assert render("svg", trace).count(b"<svg") == 1
