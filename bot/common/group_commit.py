"""Group commit: concurrent callers' writes gathered into one database statement or transaction.

While one group is being written, the items that arrive meanwhile queue up and are written
together in the next group. An idle server writes a lone item at once (no timer, no added wait); a
busy one spends one round trip per group instead of one per item. Each caller gets its own result,
or its own error, only after the group holding its item was written.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

#: writes a group: one result (or the error to raise to that caller) per item, in order
WriteGroup = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class GroupCommit(Generic[Item, Result]):
    """Gathers ``submit`` calls into groups of at most ``max_group`` for ``write``; one queue per event
    loop (a process may run several, e.g. tests)."""

    def __init__(self, write: WriteGroup, *, max_group: int, name: str) -> None:
        self._write = write
        self._max_group = max_group
        self._name = name
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def submit(self, item: Item) -> Result:
        """``item``'s result once its group is written; raises its error."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future: asyncio.Future = loop.create_future()
        queue.waiting.append((item, future))
        if queue.drain is None or queue.drain.done():
            queue.drain = loop.create_task(self._run(queue), name=self._name)
        # shielded: a caller that goes away (client hung up) must not cancel the others' group
        outcome = await asyncio.shield(future)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def busy(self) -> bool:
        """Whether items submitted on this loop are still queued or being written."""
        queue = self._queues.get(asyncio.get_running_loop())
        return queue is not None and (bool(queue.waiting) or (queue.drain is not None and not queue.drain.done()))

    async def written(self) -> None:
        """Wait until every item submitted on this loop is written."""
        while self.busy():
            queue = self._queues[asyncio.get_running_loop()]
            if queue.drain is not None and not queue.drain.done():
                await asyncio.wait([queue.drain])
            else:
                await asyncio.sleep(0)  # queued by a caller whose drain task starts on its next step

    async def _run(self, queue: _Queue) -> None:
        while queue.waiting:
            group, queue.waiting = queue.waiting[:self._max_group], queue.waiting[self._max_group:]
            try:
                outcomes: Sequence[object] = await self._write([item for item, _ in group])
            except Exception as exc:  # noqa: BLE001 - e.g. the database is down: every caller hears it
                outcomes = [exc] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)


class _Queue:
    __slots__ = ("waiting", "drain")

    def __init__(self) -> None:
        self.waiting: list[tuple[object, asyncio.Future]] = []
        self.drain: asyncio.Task | None = None
