"""Time the test drives: an injectable clock and sleep that wait on the test, not the wall."""

from __future__ import annotations

import asyncio
import time


class ManualTime:
    """A clock and a sleep the test advances: each sleep waits until the test ticks."""

    def __init__(self) -> None:
        self.now = time.time()
        self.requests: asyncio.Queue[tuple[float, asyncio.Event]] = asyncio.Queue()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.Event()
        await self.requests.put((seconds, wake))
        await wake.wait()

    async def tick(self) -> float:
        """Let the next sleep end (advancing the clock by it); return its length."""
        seconds, wake = await asyncio.wait_for(self.requests.get(), 5)
        self.now += seconds
        wake.set()
        return seconds
