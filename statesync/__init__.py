"""statesync: resumable, observable, retry-safe chunked API syncs.

The engine (:func:`perform_sync_chunk`) decides; adapters (``statesync.adapters.local``,
``statesync.adapters.inngest``) drive it. Plug-in points are small protocols passed in as
instances: :class:`StateStore`, :class:`Destination`, :class:`BaseConnector`,
:class:`Listener`.
"""

from statesync._chunk import ChunkOutcome, apply_trigger, perform_sync_chunk
from statesync._machine import STATES, TRANSITIONS, TransitionDef, next_state
from statesync._models import (
    EntityRecord,
    ErrorInfo,
    FetchState,
    JobSpec,
    Lease,
    Page,
    PageRequest,
    Record,
    ResumableFetchOptions,
    SyncMode,
    SyncState,
    TransitionRecord,
)
from statesync._policy import ChunkPolicy, PolicySet, RetryPolicy
from statesync.connector import BaseConnector
from statesync.destination import Destination
from statesync.events import Emitter, Event, Listener
from statesync.store import StateStore

__version__ = "0.1.0"

__all__ = [
    "STATES",
    "TRANSITIONS",
    "BaseConnector",
    "ChunkOutcome",
    "ChunkPolicy",
    "Destination",
    "Emitter",
    "EntityRecord",
    "ErrorInfo",
    "Event",
    "FetchState",
    "JobSpec",
    "Lease",
    "Listener",
    "Page",
    "PageRequest",
    "PolicySet",
    "Record",
    "ResumableFetchOptions",
    "RetryPolicy",
    "StateStore",
    "SyncMode",
    "SyncState",
    "TransitionDef",
    "TransitionRecord",
    "apply_trigger",
    "next_state",
    "perform_sync_chunk",
]
