"""Audit events, written in the same transaction as the state change they record.

`prev_hash`/`hash` stay empty here; the tamper-evident chain fills them (a later step).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import AuditEvent


def audit_event(
    kind: str,
    *,
    now: datetime,
    actor: str = "",
    notice_id: int | None = None,
    member_id: int | None = None,
    **data: Any,
) -> AuditEvent:
    """An unsaved event; pass it (with others) to `record`."""
    return AuditEvent(kind=kind, occurred_at=now, actor=actor, notice_id=notice_id,
                      member_id=member_id, data=data)


async def record(events: Iterable[AuditEvent], *, using_db: BaseDBAsyncClient | None = None) -> None:
    batch = list(events)
    if batch:
        await AuditEvent.bulk_create(batch, batch_size=1000, using_db=using_db)
