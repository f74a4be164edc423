"""statesync: resumable, observable, retry-safe chunked API syncs.

The engine (:func:`perform_sync_chunk`) decides; adapters (``statesync.adapters.local``,
``statesync.adapters.inngest``) drive it. Plug-in points are small protocols passed in as
instances: :class:`StateStore`, :class:`Destination`, :class:`BaseConnector`,
:class:`Listener`.
"""

from typing import TYPE_CHECKING, Any

from statesync._budget import BudgetRegistry, MemoryRateBudget, RateBudget, RateSettings
from statesync._cancel import CancelResult, cancel_job
from statesync._chunk import ChunkOutcome, apply_trigger, perform_sync_chunk
from statesync._gc import collect_orphan_staging, find_orphan_staging
from statesync._handle import JobHandle
from statesync._instances import Instance, open_instance
from statesync._jobconfig import JobConfig, job_config_from_mapping, load_job_config
from statesync._listeners import LoggingListener
from statesync._machine import STATES, TRANSITIONS, TransitionDef, next_state
from statesync._models import (
    EntityRecord,
    ErrorInfo,
    FetchState,
    JobSpec,
    Lease,
    Page,
    PageRequest,
    Partition,
    RateInfo,
    Record,
    ResumableFetchOptions,
    SyncMode,
    SyncState,
    TimeWindow,
    TransitionRecord,
)
from statesync._namespace import default_namespace
from statesync._plugins import (
    ConnectorPlugin,
    installed_connectors,
    job_factory,
    open_connector,
    resolve_connector,
)
from statesync._policy import ChunkPolicy, KindOverride, PolicySet, RetryDecision, RetryPolicy
from statesync._policy_config import (
    PolicyConfigError,
    load_policies,
    policies_from_env,
    policies_from_mapping,
)
from statesync._ratelimit import rate_info_from_headers, retry_after_from_headers
from statesync._redact import redact
from statesync._status import EntityStatus, Holder, JobStatus, Liveness, Outcome, job_status
from statesync.connector import BaseConnector, Partitioning
from statesync.destination import CheckpointingDestination, Destination, StagedTable, StagingCheck
from statesync.events import Emitter, Event, Listener
from statesync.store import StateStore
from statesync.stores._redis_budget import RedisBudgets, RedisRateBudget

if TYPE_CHECKING:
    from statesync._cli._progress_display import ProgressDisplay as ProgressDisplay

__version__ = "0.1.0"

__all__ = [
    "STATES",
    "TRANSITIONS",
    "BaseConnector",
    "BudgetRegistry",
    "CancelResult",
    "CheckpointingDestination",
    "ChunkOutcome",
    "ChunkPolicy",
    "ConnectorPlugin",
    "Destination",
    "Emitter",
    "EntityRecord",
    "EntityStatus",
    "ErrorInfo",
    "Event",
    "FetchState",
    "Holder",
    "Instance",
    "JobConfig",
    "JobHandle",
    "JobSpec",
    "JobStatus",
    "KindOverride",
    "Lease",
    "Listener",
    "Liveness",
    "LoggingListener",
    "MemoryRateBudget",
    "Outcome",
    "Page",
    "PageRequest",
    "Partition",
    "Partitioning",
    "PolicyConfigError",
    "PolicySet",
    "RateBudget",
    "RateInfo",
    "RateSettings",
    "Record",
    "RedisBudgets",
    "RedisRateBudget",
    "ResumableFetchOptions",
    "RetryDecision",
    "RetryPolicy",
    "StagedTable",
    "StagingCheck",
    "StateStore",
    "SyncMode",
    "SyncState",
    "TimeWindow",
    "TransitionDef",
    "TransitionRecord",
    "apply_trigger",
    "cancel_job",
    "collect_orphan_staging",
    "default_namespace",
    "find_orphan_staging",
    "installed_connectors",
    "job_config_from_mapping",
    "job_factory",
    "job_status",
    "load_job_config",
    "load_policies",
    "next_state",
    "open_connector",
    "open_instance",
    "perform_sync_chunk",
    "policies_from_env",
    "policies_from_mapping",
    "rate_info_from_headers",
    "redact",
    "resolve_connector",
    "retry_after_from_headers",
]

# The CLI's rich progress bars: reachable as statesync.ProgressDisplay, but imported on
# first use so that `import statesync` loads neither rich nor click. Not in __all__
# (a star import would load them).
_LAZY = {"ProgressDisplay": "statesync._cli._progress_display"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'statesync' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
