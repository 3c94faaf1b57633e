"""A/B variants of a notice: two to four versions (title and body) with the same topic and importance.

Assignment is deterministic and balanced: the organisations are ordered by a hash of (notice id,
organisation id) and each organisation's recipients by a hash of (notice id, member id); the
variants are then dealt round-robin along that order. Each organisation is a contiguous run of
the deal, so within every organisation (and overall) the variants' counts differ by at most one,
and the same notice always gives the same split. An optional share (`share:20%`) picks the first
recipients systematically along the same order (every fifth one, organisations included), so the
first wave is spread over organisations in proportion; the others' rows are written `held` and
sent only when a variant is rolled out (`rollout.py`).

The assignment is per member, stored on every delivery row of that member, with one audit event
per member. One delivery row per member and platform (a unique key) means nobody sees two variants.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.common.errors import UserError
from bot.core.commands.parser import SendCommand
from bot.core.compliance.audit import PendingEvent, audit_event
from bot.topics import ImportancePolicy
from bot.topics.importance import Importance
from storage.models import (
    DeliveryStatus,
    Member,
    Notice,
    NoticeExperiment,
    NoticeVariant,
)

LABELS = "ABCD"
MAX_VARIANTS = len(LABELS)


@dataclass(frozen=True)
class Assignment:
    variant: str  # "" while held
    held: bool


def validate_variants(command: SendCommand, policy: ImportancePolicy, *, max_title: int, max_body: int) -> None:
    """The checks a notice with variants needs beyond a plain notice's."""
    if not command.variants:
        if command.share is not None:
            raise UserError("share: is for A/B tests; add variants with `|| <title B> | <body B>`")
        return
    if len(command.variants) + 1 > MAX_VARIANTS:
        raise UserError(f"a notice has at most {MAX_VARIANTS} variants (A to D)")
    if policy.level is Importance.NICE:
        raise UserError("variants need a direct message to measure; use need-to-know or must-know")
    for label, (title, body) in zip(LABELS[1:], command.variants, strict=False):
        if not title.strip() or not body.strip():
            raise UserError(f"variant {label} needs a title and a body")
        if len(title) > max_title:
            raise UserError(f"variant {label}'s title is {len(title)} characters; keep it under {max_title}")
        if len(body) > max_body:
            raise UserError(f"variant {label}'s body is {len(body)} characters; keep it under {max_body}")


async def store_variants(notice: Notice, command: SendCommand, *, now: datetime, using_db: Any) -> int:
    """Write variant A (the notice's own text), B, C, D and the experiment; returns the count."""
    if not command.variants:
        return 0
    texts = [(notice.title, notice.body), *((t.strip(), b.strip()) for t, b in command.variants)]
    await NoticeVariant.bulk_create([NoticeVariant(notice_id=notice.id, label=label, title=title, body=body)
                                     for label, (title, body) in zip(LABELS, texts, strict=False)], using_db=using_db)
    await NoticeExperiment.create(notice_id=notice.id, share_percent=command.share, created_at=now, using_db=using_db)
    return len(texts)


def _rank(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def assign(notice_id: int, members: Sequence[tuple[int, int]], labels: Sequence[str],
           share: int | None = None) -> dict[int, Assignment]:
    """member id -> Assignment, for (member id, organisation id) pairs; see the module docstring."""
    by_org: dict[int, list[int]] = {}
    for member_id, org_id in members:
        by_org.setdefault(org_id, []).append(member_id)
    order: list[int] = []
    for org_id in sorted(by_org, key=lambda o: _rank(notice_id, "org", o)):
        order += sorted(set(by_org[org_id]), key=lambda m: _rank(notice_id, "member", m))
    result: dict[int, Assignment] = {}
    dealt = 0
    for index, member_id in enumerate(order):
        in_first_wave = share is None or ((index + 1) * share) // 100 > (index * share) // 100
        if in_first_wave:
            result[member_id] = Assignment(labels[dealt % len(labels)], held=False)
            dealt += 1
        else:
            result[member_id] = Assignment("", held=True)
    return result


async def labels_of(notice_id: int, using_db: Any = None) -> list[str]:
    return sorted(await NoticeVariant.filter(notice_id=notice_id).using_db(using_db).values_list("label", flat=True))


class QueuedRow(Protocol):
    """A delivery row `publish` is about to write (bot.core.notices.sending.QueuedDelivery)."""

    member_id: int
    status: str
    variant: str


async def assign_rows(notice: Notice, deliveries: Sequence[QueuedRow], *, now: datetime,
                      using_db: Any) -> list[PendingEvent]:
    """Give the rows `publish` is about to write their variant, hold back those outside the first
    share, and return one audit event per member. Nothing happens for a notice without variants."""
    labels = await labels_of(notice.id, using_db)
    if not labels:
        return []
    experiment = await NoticeExperiment.get_or_none(notice_id=notice.id, using_db=using_db)
    member_ids = sorted({d.member_id for d in deliveries})
    orgs: list[tuple[int, int]] = []
    for start in range(0, len(member_ids), 5000):
        orgs += await Member.filter(id__in=member_ids[start:start + 5000]).using_db(using_db).values_list(
            "id", "organisation_id")
    plan = assign(notice.id, orgs, labels, experiment.share_percent if experiment else None)
    for d in deliveries:
        chosen = plan[d.member_id]
        d.variant = chosen.variant
        if chosen.held and d.status == DeliveryStatus.PENDING.value:
            d.status = DeliveryStatus.HELD.value
    return [audit_event("notice.variant_assigned", now=now, notice_id=notice.id, member_id=member_id,
                        variant=chosen.variant or None, held=chosen.held)
            for member_id, chosen in sorted(plan.items())]
