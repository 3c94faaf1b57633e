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

from storage.db import asyncpg_dsn, dialect

log = logging.getLogger(__name__)

CHANNEL = "herald_outbox"


UPDATES_ONLY = "updates"  # the payload's kind: only copies' in-place updates are due (see Outbox.wake)


async def notify_outbox(payload: str = "") -> None:
    """Tell every replica's outbox that new work may be due (PostgreSQL; on SQLite the one process
    wakes its own outbox, and a command-line process leaves it to the outbox's poll). `payload`:
    "ORIGIN:KIND" (`PgWakeups.notify`); empty, an urgent wake from no replica."""
    connection = Tortoise.get_connection("default")
    if dialect(connection) != "postgres":
        return
    try:
        await connection.execute_query(f"SELECT pg_notify('{CHANNEL}', $1)", [payload])
    except Exception:  # noqa: BLE001 - the others still poll
        log.warning("could not NOTIFY the other replicas", exc_info=True)


class PgWakeups:
    """LISTEN for the outbox's wakes on a dedicated connection. A replica's own NOTIFYs (`origin`)
    are not heard again (it woke itself already); one asking only for updates calls
    `on_update_wake` (default `on_wake`), so the hearer may gather more of them before it looks."""

    def __init__(self, db_url: str, on_wake: Callable[[], None], *, max_backoff: float = 30.0,
                 origin: str = "", on_update_wake: Callable[[], None] | None = None) -> None:
        self.dsn = asyncpg_dsn(db_url)
        self.on_wake = on_wake
        self.origin = origin
        self.on_update_wake = on_update_wake or on_wake
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

    async def notify(self, urgent: bool = True) -> None:
        """Tell the other replicas that new work may be due (`urgent` False: only updates)."""
        await notify_outbox(f"{self.origin}:{'' if urgent else UPDATES_ONLY}")

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        origin, _, kind = (payload or "").partition(":")
        if self.origin and origin == self.origin:
            return
        (self.on_update_wake if kind == UPDATES_ONLY else self.on_wake)()

    async def _listen(self) -> None:
        import asyncpg

        backoff = 0.5
        while not self._stopping:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn: lost.set())
                await conn.add_listener(CHANNEL, self._heard)
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
