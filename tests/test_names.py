"""One meaning per word: the renamed names, and the deprecated ones that still work."""

from __future__ import annotations

import pytest

from statesync import ChunkOutcome, FetchState, SyncState
from statesync._machine import TRANSITIONS


def _leaves(state: SyncState) -> bool:
    return any(state in t.sources for t in TRANSITIONS)


@pytest.mark.parametrize("state", list(SyncState))
def test_terminal_and_done_states(state: SyncState) -> None:
    terminal = {SyncState.COMPLETE, SyncState.FAILED, SyncState.CANCELLED}
    assert state.is_terminal is (state in terminal)
    # done: no transition ever leaves it (failed may be resumed, and cancelled)
    assert state.is_done is (not _leaves(state))
    with pytest.warns(DeprecationWarning, match="is_final is deprecated"):
        assert state.is_final is state.is_done


def _outcome(state: SyncState) -> ChunkOutcome:
    return ChunkOutcome("job", "customers", state, FetchState(), 0)


@pytest.mark.parametrize("state", list(SyncState))
def test_a_chunk_outcome_is_terminal_when_its_state_is(state: SyncState) -> None:
    outcome = _outcome(state)
    assert outcome.is_terminal is state.is_terminal
    with pytest.warns(DeprecationWarning, match="finished is deprecated"):
        assert outcome.finished is outcome.is_terminal
