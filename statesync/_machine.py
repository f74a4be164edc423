"""The entity-sync state machine, declared once as data.

``STATES`` and ``TRANSITIONS`` are the whole definition; diagrams, validation and the
engine all read them. The ``transitions`` library holds the table and answers "where
does this trigger lead from that state"; the state itself lives on the entity's record,
so the machine keeps no model and fires no callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from attrs import frozen
from transitions import Machine

from statesync._models import SyncState
from statesync.errors import InvalidTransitionError


@frozen
class TransitionDef:
    trigger: str
    sources: tuple[SyncState, ...]
    dest: SyncState | None
    """``None`` is a reflexive transition: the state stays, the event is recorded."""
    doc: str


S = SyncState
STATES: Final[tuple[SyncState, ...]] = tuple(SyncState)
INITIAL: Final = S.PENDING
TRANSITIONS: Final[tuple[TransitionDef, ...]] = (
    TransitionDef("start", (S.PENDING,), S.FETCHING, "the first chunk begins"),
    TransitionDef("chunk_finished", (S.FETCHING,), S.CHUNK_DONE, "a chunk's pages all landed"),
    TransitionDef("next_chunk", (S.CHUNK_DONE,), S.FETCHING, "the next chunk begins"),
    TransitionDef("complete", (S.FETCHING,), S.COMPLETE, "the last page landed and was swapped in"),
    TransitionDef("retry_chunk", (S.FETCHING,), None, "a retryable error; the chunk runs again"),
    TransitionDef("fail", (S.PENDING, S.FETCHING, S.CHUNK_DONE), S.FAILED, "a final error"),
    TransitionDef("resume", (S.FAILED,), S.FETCHING, "an operator resumes a failed entity"),
    TransitionDef(
        "cancel", (S.PENDING, S.FETCHING, S.CHUNK_DONE, S.FAILED), S.CANCELLED, "stopped for good"
    ),
)


def _build() -> Machine:
    return Machine(
        model=None,
        states=[s.value for s in STATES],
        transitions=[
            {
                "trigger": t.trigger,
                "source": [s.value for s in t.sources],
                "dest": t.dest.value if t.dest is not None else None,
            }
            for t in TRANSITIONS
        ],
        initial=INITIAL.value,
        auto_transitions=False,
    )


MACHINE: Final = _build()
TRIGGERS: Final[tuple[str, ...]] = tuple(t.trigger for t in TRANSITIONS)


def next_state(entity: str, state: SyncState, trigger: str) -> SyncState:
    """Where ``trigger`` leads from ``state``; a typed error when it leads nowhere."""
    found = MACHINE.get_transitions(trigger=trigger, source=state.value)
    if not found:
        raise InvalidTransitionError(entity, state.value, trigger)
    dest = found[0].dest
    return state if dest is None else SyncState(dest)


def triggers_from(state: SyncState) -> Sequence[str]:
    return [t for t in MACHINE.get_triggers(state.value) if t in TRIGGERS]
