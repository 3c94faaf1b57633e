"""Wake-ups across replicas on PostgreSQL: LISTEN/NOTIFY (as procrastinate does).

A replica that accepts a send NOTIFYs `herald_outbox`; every replica LISTENs on one dedicated
connection (a pooled one would lose its LISTEN when returned to the pool) and wakes its outbox at
once instead of at its next poll. The connection is re-opened, with backoff, when it is lost;
after a reconnect the outbox is woken in case a notification was missed meanwhile.
SQLite has one process: the outbox's in-process wake is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from tortoise import Tortoise

from storage.db import asyncpg_dsn

log = logging.getLogger(__name__)

CHANNEL = "herald_outbox"


async def notify_outbox() -> None:
    """Tell every replica's outbox that new work may be due (PostgreSQL; on SQLite the one process
    wakes its own outbox, and a command-line process leaves it to the outbox's poll)."""
    connection = Tortoise.get_connection("default")
    if connection.capabilities.dialect != "postgres":
        return
    try:
        await connection.execute_query(f"SELECT pg_notify('{CHANNEL}', '')")
    except Exception:  # noqa: BLE001 - the others still poll
        log.warning("could not NOTIFY the other replicas", exc_info=True)


class PgWakeups:
    def __init__(self, db_url: str, on_wake: Callable[[], None], *, max_backoff: float = 30.0) -> None:
        self.dsn = asyncpg_dsn(db_url)
        self.on_wake = on_wake
        self.max_backoff = max_backoff
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="herald-pg-listen")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def notify(self) -> None:
        """Tell every replica (this one too) that new work may be due."""
        await notify_outbox()

    async def _listen(self) -> None:
        import asyncpg

        backoff = 0.5
        while not self._stopping:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(CHANNEL, lambda *_args: self.on_wake())
                self.listening.set()
                self.on_wake()  # anything notified while we were not listening
                backoff = 0.5
                while not lost.is_set() and not conn.is_closed():
                    try:  # a dead TCP connection is only noticed when used
                        await asyncio.wait_for(lost.wait(), 30)
                    except TimeoutError:
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                log.warning("LISTEN connection to PostgreSQL lost (%s); reconnecting", type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
