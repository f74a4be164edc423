"""MemoryDestination against the shared destination contract."""

from __future__ import annotations

import pytest

from statesync.destination import Destination
from statesync.destinations.memory import MemoryDestination
from support.destination_contract import CheckpointContract, DestinationContract, DestinationFactory


class TestMemoryDestination(DestinationContract, CheckpointContract):
    @pytest.fixture
    def make(self) -> DestinationFactory:
        # One shared instance stands in for "the same place", as a file would.
        shared = MemoryDestination()

        async def factory() -> Destination:
            return shared

        return factory
