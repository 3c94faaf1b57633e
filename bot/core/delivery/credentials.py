"""Copies and messages waiting because a platform refused Herald's own credentials.

The outbox pauses such a platform and asks again every few minutes (`Outbox._credentials_refused`);
the rows it had claimed wait, pending, with `CREDENTIALS_REFUSED` and the platform's words as their
error. Renewed credentials (a new Teams client secret) reach Herald by a restart, so on start-up
those rows are due at once rather than when their re-check would have come.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.core.ports import CREDENTIALS_REFUSED
from storage.models import AuditEvent, Delivery, DeliveryStatus, OutboundMessage

REFUSED, RESTORED = "platform.credentials_refused", "platform.credentials_restored"


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


@dataclass(frozen=True, slots=True)
class Refusal:
    """A platform refusing Herald's own credentials, as the database shows it: the latest
    `platform.credentials_refused` not followed by a `platform.credentials_restored`, and the
    rows waiting with `CREDENTIALS_REFUSED` (either alone is enough: the audit event is written
    once per refusal, the rows by every replica that was refused)."""

    since: datetime | None
    reason: str
    waiting: int


_LOOK_BACK = 50  # credentials events are rare: the latest few of each kind say the state


async def refusal(platform: str) -> Refusal | None:
    """Whether `platform` refuses Herald's credentials now, read only (`herald doctor`)."""
    waiting = dict(status=DeliveryStatus.PENDING.value, error__startswith=CREDENTIALS_REFUSED, platform=platform)
    count = await Delivery.filter(**waiting).count() + await OutboundMessage.filter(**waiting).count()
    refused = await _latest(REFUSED, platform)
    restored = await _latest(RESTORED, platform)
    if refused is not None and restored is not None and restored.id > refused.id:
        refused = None  # that refusal is over
    if refused is None and not count:
        return None
    reason = refused.data.get("reason", "") if refused is not None else ""
    if not reason:  # the rows say it (a replica restarted since the refusal it audited)
        rows = [*await Delivery.filter(**waiting).order_by("-id").limit(1).values_list("error", flat=True),
                *await OutboundMessage.filter(**waiting).order_by("-id").limit(1).values_list("error", flat=True)]
        reason = rows[0].removeprefix(CREDENTIALS_REFUSED) if rows else ""
    return Refusal(refused.occurred_at if refused is not None else None, reason, count)


async def _latest(kind: str, platform: str) -> AuditEvent | None:
    recent = await AuditEvent.filter(kind=kind).order_by("-occurred_at", "-id").limit(_LOOK_BACK)
    return next((e for e in recent if (e.data or {}).get("platform") == platform), None)
