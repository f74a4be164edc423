"""State diagrams of the entity-sync machine, generated from its one definition.

Everything here reads :data:`statesync._machine.STATES` and
:data:`~statesync._machine.TRANSITIONS`; no diagram is drawn by hand. Mermaid
(``stateDiagram-v2``) and DOT are plain text; SVG and PNG are rendered by Graphviz's
``dot`` when it is installed (:class:`MissingProgramError` otherwise).

For a live job, :func:`load_trace` reads an entity's record and transition history from a
store; passing the trace to :func:`to_mermaid`, :func:`to_dot` or :func:`render`
highlights the current state and annotates the path taken: how often each transition
fired, the errors' kinds, and the failing transition with its (truncated) message.
Records hold no secrets, so neither do the diagrams.

The committed diagrams in ``diagrams/`` are regenerated with
``statesync diagram --write diagrams/`` (:func:`write_machine_diagrams`); a test fails
when they drift from the machine.
"""

from __future__ import annotations

import collections
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, Literal, get_args

from attrs import frozen

from statesync._machine import INITIAL, STATES, TRANSITIONS, TransitionDef
from statesync._models import EntityRecord, ErrorInfo, SyncState, TransitionRecord
from statesync.errors import ConfigurationError
from statesync.store import StateStore

Format = Literal["mermaid", "dot", "svg", "png"]
FORMATS: Final[tuple[str, ...]] = get_args(Format)
SUFFIXES: Final[dict[str, Format]] = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
}
MACHINE_NAME: Final = "entity_sync"
MACHINE_FILES: Final[dict[str, Format]] = {
    f"{MACHINE_NAME}.mmd": "mermaid",
    f"{MACHINE_NAME}.dot": "dot",
    f"{MACHINE_NAME}.svg": "svg",
}
REGENERATE: Final = "statesync diagram --write diagrams/"
MESSAGE_LIMIT: Final = 120
_SOURCE_STAMP = "statesync-dot-sha256"
_TIMES = "\N{MULTIPLICATION SIGN}"


class MissingProgramError(ConfigurationError):
    """A diagram format needs an external program that is not on ``PATH``."""

    def __init__(self, program: str, purpose: str, install: str) -> None:
        super().__init__(f"{purpose} needs the {program!r} program on PATH ({install})")
        self.program = program


# -- live traces ---------------------------------------------------------------------


@frozen
class Edge:
    """One arrow of the diagram: a trigger from one state to another."""

    trigger: str
    source: SyncState
    dest: SyncState


@frozen
class EdgeUse:
    """How an entity used one edge: how often, with which error kinds."""

    count: int
    error_kinds: tuple[tuple[str, int], ...] = ()


@frozen
class EntityTrace:
    """An entity's current standing and the path it took, as read from the store."""

    job_id: str
    entity: str
    state: SyncState
    chunk_index: int
    attempts: int
    records: int
    api_calls: int
    edges: dict[Edge, EdgeUse]
    visited: frozenset[SyncState]
    failure: TransitionRecord | None = None
    last_error: ErrorInfo | None = None
    history_complete: bool = True


async def load_trace(store: StateStore, job_id: str, entity: str) -> EntityTrace:
    """Read ``entity`` of ``job_id`` from ``store`` (record and history) into a trace."""
    record = await store.get_entity(job_id, entity)
    history = await store.history(job_id, entity)
    return trace_from(record, history)


def trace_from(record: EntityRecord, history: Sequence[TransitionRecord]) -> EntityTrace:
    """The trace of an entity from its record and its (possibly capped) history."""
    failures = [t for t in history if t.trigger == "fail"]
    return EntityTrace(
        job_id=record.job_id,
        entity=record.entity,
        state=record.state,
        chunk_index=record.chunk_index,
        attempts=record.attempts,
        records=record.records,
        api_calls=record.api_calls,
        edges=_edge_uses(history),
        visited=frozenset({record.state, *(s for t in history for s in (t.source, t.dest))}),
        failure=failures[-1] if record.state is SyncState.FAILED and failures else None,
        last_error=record.last_error,
        history_complete=not history or history[0].source is INITIAL,
    )


def _edge_uses(history: Sequence[TransitionRecord]) -> dict[Edge, EdgeUse]:
    counts: collections.Counter[Edge] = collections.Counter()
    kinds: dict[Edge, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for t in history:
        edge = Edge(t.trigger, t.source, t.dest)
        counts[edge] += 1
        if t.error is not None:
            kinds[edge][t.error.kind] += 1
    return {e: EdgeUse(n, tuple(sorted(kinds[e].items()))) for e, n in counts.items()}


# -- the machine as edges --------------------------------------------------------------


def edges() -> Iterator[tuple[Edge, TransitionDef]]:
    """Every arrow of the machine, in definition order (a reflexive one loops back)."""
    for t in TRANSITIONS:
        for source in t.sources:
            yield Edge(t.trigger, source, source if t.dest is None else t.dest), t


def final_states() -> tuple[SyncState, ...]:
    return tuple(s for s in STATES if s.is_done)


def safe_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line of plain text, at most ``limit`` characters, safe inside any format."""
    flat = re.sub(r"\s+", " ", text).strip()
    # Quotes, brackets and separators end labels or notes in Mermaid or DOT.
    flat = re.sub(r"[\"`<>{}\[\];#|\\]", "'", flat)
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _use_label(trigger: str, use: EdgeUse | None) -> str:
    if use is None:
        return trigger
    kinds = ", ".join(f"{kind} {_TIMES}{n}" for kind, n in use.error_kinds)
    return f"{trigger} {_TIMES}{use.count}" + (f" ({kinds})" if kinds else "")


def summary_lines(trace: EntityTrace) -> list[str]:
    """What a live diagram says about the entity, one short line each."""
    lines = [
        f"job {safe_text(trace.job_id, 60)} entity {safe_text(trace.entity, 60)}",
        f"state {trace.state.value}, {trace.chunk_index} chunks done, "
        f"{trace.attempts} failed attempts in the current chunk",
        f"{trace.records} records, {trace.api_calls} pages fetched",
    ]
    if trace.failure is not None and trace.failure.error is not None:
        f, error = trace.failure, trace.failure.error
        lines.append(
            f"failing transition {f.trigger} ({f.source.value} to {f.dest.value}) "
            f"in chunk {f.chunk_index}, error kind {error.kind}"
        )
        # Prefixed, so no message can pose as "end note" or a %% comment in Mermaid.
        lines.append(f"message {safe_text(error.message)}")
    elif trace.last_error is not None:
        lines.append(f"last error {trace.last_error.kind}: {safe_text(trace.last_error.message)}")
    if not trace.history_complete:
        lines.append("older transitions were dropped from the history")
    return lines


# -- Mermaid ---------------------------------------------------------------------------

_GENERATED = f"generated from statesync._machine by `{REGENERATE}`; do not edit"


def to_mermaid(trace: EntityTrace | None = None) -> str:
    """The machine as Mermaid ``stateDiagram-v2``; with ``trace``, the entity's path on it."""
    lines = ["stateDiagram-v2", f"    %% {_GENERATED}", "    direction LR"]
    lines += [f"    state {_mermaid_state_label(s)} as {s.value}" for s in STATES]
    lines.append(f"    [*] --> {INITIAL.value}")
    for edge, t in edges():
        use = trace.edges.get(edge) if trace is not None else None
        lines.append(
            f"    {edge.source.value} --> {edge.dest.value} : {_use_label(t.trigger, use)}"
        )
    lines += [f"    {s.value} --> [*]" for s in final_states()]
    if trace is not None:
        lines += _mermaid_trace(trace)
    return "\n".join(lines) + "\n"


def _mermaid_state_label(state: SyncState) -> str:
    return '"' + state.value.replace("_", " ") + '"'


def _mermaid_trace(trace: EntityTrace) -> list[str]:
    lines = [
        "    classDef visited fill:#e7f0ff,stroke:#1f6feb",
        "    classDef current fill:#ffd27f,stroke:#b35900,stroke-width:3px",
        "    classDef failing fill:#ffb3b3,stroke:#b30000,stroke-width:3px",
    ]
    visited = sorted(s.value for s in trace.visited if s is not trace.state)
    if visited:
        lines.append(f"    class {','.join(visited)} visited")
    current = "failing" if trace.state is SyncState.FAILED else "current"
    lines.append(f"    class {trace.state.value} {current}")
    lines.append(f"    note right of {trace.state.value}")
    lines += [f"        {line}" for line in summary_lines(trace)]
    lines.append("    end note")
    return lines


# -- DOT -------------------------------------------------------------------------------


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(trace: EntityTrace | None = None) -> str:
    """The machine as a Graphviz digraph; with ``trace``, the entity's path on it."""
    lines = [
        f"// {_GENERATED}",
        f"digraph {MACHINE_NAME} {{",
        "    rankdir=LR;",
        '    graph [fontname="Helvetica", fontsize=11];',
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    __start [shape=point, width=0.15, label=""];',
    ]
    lines += [f"    {s.value} [{_dot_node_attrs(s, trace)}];" for s in STATES]
    lines.append(f"    __start -> {INITIAL.value};")
    for edge, t in edges():
        lines.append(
            f"    {edge.source.value} -> {edge.dest.value} [{_dot_edge_attrs(edge, t, trace)}];"
        )
    if trace is not None:
        label = "\\l".join(_quoted(x)[1:-1] for x in summary_lines(trace)) + "\\l"
        lines += ["    labelloc=t;", "    labeljust=l;", f'    label="{label}";']
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node_attrs(state: SyncState, trace: EntityTrace | None) -> str:
    attrs = [f"label={_quoted(state.value.replace('_', ' '))}"]
    if state.is_done:
        attrs.append("peripheries=2")
    if trace is None:
        return ", ".join(attrs)
    if state is trace.state:
        fill = "#ffb3b3" if state is SyncState.FAILED else "#ffd27f"
        attrs += ['style="rounded,filled,bold"', f'fillcolor="{fill}"', "penwidth=3"]
    elif state in trace.visited:
        attrs += ['style="rounded,filled"', 'fillcolor="#e7f0ff"']
    return ", ".join(attrs)


def _dot_edge_attrs(edge: Edge, t: TransitionDef, trace: EntityTrace | None) -> str:
    use = trace.edges.get(edge) if trace is not None else None
    attrs = [f"label={_quoted(_use_label(t.trigger, use))}", f"tooltip={_quoted(t.doc)}"]
    if trace is not None and use is None:
        attrs.append('color="#999999", fontcolor="#999999"')
    elif use is not None:
        failing = trace is not None and trace.failure is not None and edge == _failure_edge(trace)
        color = "#b30000" if failing else "#1f6feb"
        attrs.append(f'color="{color}", fontcolor="{color}", penwidth=2')
    return ", ".join(attrs)


def _failure_edge(trace: EntityTrace) -> Edge | None:
    f = trace.failure
    return None if f is None else Edge(f.trigger, f.source, f.dest)


# -- rendering -------------------------------------------------------------------------


def render(fmt: Format, trace: EntityTrace | None = None) -> bytes:
    """The diagram in ``fmt``; SVG and PNG run Graphviz's ``dot``."""
    if fmt == "mermaid":
        return to_mermaid(trace).encode()
    source = to_dot(trace)
    if fmt == "dot":
        return source.encode()
    if fmt not in FORMATS:
        raise ConfigurationError(f"unknown diagram format {fmt!r}; expected one of {FORMATS}")
    image = run_dot(source, fmt)
    return stamp_svg(image, source) if fmt == "svg" else image


def dot_program() -> str:
    """The path of Graphviz's ``dot``, or :class:`MissingProgramError`."""
    found = shutil.which("dot")
    if found is None:
        raise MissingProgramError(
            "dot",
            "rendering SVG or PNG diagrams",
            "install Graphviz, e.g. apt-get install graphviz",
        )
    return found


def run_dot(source: str, fmt: str) -> bytes:
    """Render DOT ``source`` with ``dot -T<fmt>``; a DOT error is a ConfigurationError."""
    # A fixed program with the source on stdin: nothing from the caller reaches a shell.
    done = subprocess.run(
        [dot_program(), f"-T{fmt}"], input=source.encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()
        raise ConfigurationError(f"dot could not render the diagram: {reason}")
    return done.stdout


def source_digest(dot_source: str) -> str:
    return hashlib.sha256(dot_source.encode()).hexdigest()


def stamp_svg(svg: bytes, dot_source: str) -> bytes:
    """Mark the SVG with the digest of its DOT source.

    Graphviz versions lay out and number things differently, so a committed SVG cannot
    be compared byte for byte; the stamp says which machine definition it shows.
    """
    stamp = f"<!-- {_SOURCE_STAMP}: {source_digest(dot_source)} -->\n".encode()
    head, sep, rest = svg.partition(b"<svg")
    return head + stamp + sep + rest if sep else stamp + svg


def svg_stamp(svg: bytes) -> str | None:
    """The DOT digest a stamped SVG was rendered from (``None`` when unstamped)."""
    found = re.search(rf"<!-- {_SOURCE_STAMP}: ([0-9a-f]{{64}}) -->".encode(), svg)
    return found.group(1).decode() if found else None


def machine_diagrams(formats: Iterable[Format] | None = None) -> dict[str, bytes]:
    """The committed files of ``diagrams/``: name to content."""
    wanted = set(formats) if formats is not None else set(MACHINE_FILES.values())
    if "svg" in wanted or "png" in wanted:
        dot_program()  # fail before producing anything when dot is missing
    return {name: render(fmt) for name, fmt in MACHINE_FILES.items() if fmt in wanted}


def write_machine_diagrams(directory: str | Path) -> list[Path]:
    """Regenerate ``entity_sync.{mmd,dot,svg}`` in ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in machine_diagrams().items():
        path = out / name
        path.write_bytes(content)
        written.append(path)
    return written


def format_for(path: str | Path | None, default: Format = "mermaid") -> Format:
    """The format a file name's suffix asks for."""
    if path is None:
        return default
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigurationError(
            f"cannot tell the diagram format from {str(path)!r}: use --format or one of "
            f"{', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]
