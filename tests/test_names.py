"""One meaning per word: the renamed names, and the deprecated ones that still work."""

from __future__ import annotations

from pathlib import Path

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


def test_error_info_kind_is_an_error_kind_and_old_records_still_load() -> None:
    from datetime import UTC, datetime

    from statesync import ErrorInfo
    from statesync._converter import dumps, loads
    from statesync.errors import ErrorKind

    info = ErrorInfo("rate_limited", "slow down", datetime(2026, 1, 1, tzinfo=UTC))
    assert info.kind is ErrorKind.RATE_LIMITED
    stored = dumps(info)
    assert '"kind":"rate_limited"' in stored  # the stored form is unchanged
    assert loads(stored, ErrorInfo) == info
    newer = stored.replace('"rate_limited"', '"a_kind_from_a_newer_release"')
    assert loads(newer, ErrorInfo).kind is ErrorKind.INTERNAL
    with pytest.raises(ValueError, match="not_a_kind"):
        ErrorInfo("not_a_kind", "x", datetime(2026, 1, 1, tzinfo=UTC))


def test_an_entity_record_with_an_unknown_error_kind_still_loads() -> None:
    from datetime import UTC, datetime

    from statesync import EntityRecord, ErrorInfo, SyncMode
    from statesync._converter import dumps, loads
    from statesync.errors import ErrorKind

    error = ErrorInfo("auth", "no", datetime(2026, 1, 1, tzinfo=UTC))
    record = EntityRecord("job", "customers", SyncMode.FULL, last_error=error)
    raw = dumps(record).replace('"auth"', '"brand_new"')
    loaded = loads(raw, EntityRecord).last_error
    assert loaded is not None and loaded.kind is ErrorKind.INTERNAL


def test_chunk_policy_pages_in_flight_and_its_deprecated_name() -> None:
    from statesync import ChunkPolicy

    assert ChunkPolicy(pages_in_flight=3).pages_in_flight == 3
    with pytest.warns(DeprecationWarning, match="use pages_in_flight"):
        old = ChunkPolicy(concurrency=3)
    assert old == ChunkPolicy(pages_in_flight=3)
    with pytest.warns(DeprecationWarning, match="use pages_in_flight"):
        assert old.concurrency == 3
    with pytest.raises(ValueError, match="pages_in_flight"):
        ChunkPolicy(pages_in_flight=0)


def test_the_deprecated_chunk_key_in_policy_documents_warns_and_still_works() -> None:
    from statesync import PolicyConfigError, policies_from_env, policies_from_mapping

    with pytest.warns(FutureWarning, match=r"default\.chunk\.concurrency is deprecated"):
        old = policies_from_mapping({"default": {"chunk": {"concurrency": 3}}})
    assert old.chunk.pages_in_flight == 3
    env = {"STATESYNC_POLICY__CONNECTORS__STRIPE__CHUNK__CONCURRENCY": "2"}
    with pytest.warns(FutureWarning, match=r"STATESYNC_POLICY__CONNECTORS__STRIPE__CHUNK"):
        assert policies_from_env(env).chunk_for("stripe").pages_in_flight == 2
    both = {"default": {"chunk": {"concurrency": 3, "pages_in_flight": 2}}}
    with pytest.raises(PolicyConfigError, match="deprecated name of 'pages_in_flight'"):
        policies_from_mapping(both)


def test_deprecated_cli_flags_are_rewritten_with_a_warning() -> None:
    from click.testing import CliRunner

    from statesync._cli import main
    from statesync._cli._renamed import renamed_args, renamed_settings

    assert renamed_args(["--concurrency", "2", "--concurrency-pages=3", "--", "--concurrency"]) == [
        "--parallel-entities",
        "2",
        "--pages-in-flight=3",
        "--",
        "--concurrency",
    ]
    result = CliRunner().invoke(main, ["run", "--entity", "customers", "--concurrency", "0"])
    assert result.exit_code == 2
    assert "warning: --concurrency is deprecated, use --parallel-entities" in result.stderr
    assert "--parallel-entities" in result.stderr  # the usage error names the new flag
    stored = {"concurrency": 2, "concurrency_pages": 3, "lease_wait": 0.0}
    assert renamed_settings(stored) == {
        "parallel_entities": 2,
        "pages_in_flight": 3,
        "lease_wait": 0.0,
    }


def test_the_deprecated_run_key_of_a_job_config_warns_and_still_works(tmp_path: Path) -> None:
    from statesync._jobconfig import JobConfigError, load_job_config

    path = tmp_path / "job.toml"
    path.write_text('[connector]\nname = "stripe"\n[run]\nconcurrency = 2\n')
    with pytest.warns(FutureWarning, match=r"run\.concurrency is deprecated"):
        config = load_job_config(path)
    assert config.run == {"parallel_entities": 2}
    path.write_text('[connector]\nname = "stripe"\n[run]\nconcurrency = 2\nparallel_entities = 3\n')
    with pytest.raises(JobConfigError, match=r"run\.concurrency"):
        load_job_config(path)


def test_local_runner_parallel_entities_and_its_deprecated_name() -> None:
    from statesync.adapters.local import LocalRunner
    from statesync.connectors.memory import MemoryConnector
    from statesync.destinations.memory import MemoryDestination
    from statesync.stores.memory import MemoryStateStore

    parts = {
        "connector": MemoryConnector({"a": []}),
        "store": MemoryStateStore(),
        "destination": MemoryDestination(),
    }
    assert LocalRunner(**parts, parallel_entities=2)._sem._value == 2  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match="use parallel_entities"):
        old = LocalRunner(**parts, concurrency=3)  # type: ignore[arg-type]
    assert old._sem._value == 3
