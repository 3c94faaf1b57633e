"""Copies and messages waiting because a platform refused Herald's own credentials.

The outbox pauses such a platform and asks again every few minutes (`Outbox._credentials_refused`);
the rows it had claimed wait, pending, with `CREDENTIALS_REFUSED` and the platform's words as their
error. Renewed credentials (a new Teams client secret) reach Herald by a restart, so on start-up
those rows are due at once rather than when their re-check would have come.
"""

from __future__ import annotations

from datetime import datetime

from bot.core.ports import CREDENTIALS_REFUSED
from storage.models import Delivery, DeliveryStatus, OutboundMessage


async def due_after_restart(now: datetime) -> set[str]:
    """Make the rows waiting for Herald's credentials due now (every platform: a restart may
    have fixed any). Returns their platforms, for the outbox to try the credentials there with
    one send first (`Outbox.credentials_in_doubt`); still refused, they pause it again."""
    waiting = dict(status=DeliveryStatus.PENDING.value, error__startswith=CREDENTIALS_REFUSED)
    platforms = set(await Delivery.filter(**waiting).distinct().values_list("platform", flat=True))
    platforms |= set(await OutboundMessage.filter(**waiting).distinct().values_list("platform", flat=True))
    if platforms:
        await Delivery.filter(**waiting, next_attempt_at__gt=now).update(next_attempt_at=now)
        await OutboundMessage.filter(**waiting, next_attempt_at__gt=now).update(next_attempt_at=now)
    return platforms
