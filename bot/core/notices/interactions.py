"""Presses of a notice's buttons other than Acknowledge (the link), for comparing A/B variants.

Slack reports a press of a link button to the app (a block_actions payload) before opening the
link. Teams opens links itself and tells nobody, so in an A/B test's Teams cards the link points
at Herald (`{HERALD_PUBLIC_URL}/go/<notice>.<member>.<signature>`), which counts the press and
redirects to the notice's link read from the database (the token names no URL, so it cannot be
used as an open redirect). Without HERALD_PUBLIC_URL and HERALD_SECRET_KEY Teams link presses are
not counted; variants are assigned without regard to platform, so every variant then has the
same expected share of uncounted presses and the comparison between them stays fair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.common.secrets import sign, signing_keys, verify_any
from bot.core.compliance.audit import audit_event, record
from storage.models import (
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeInteraction,
    NoticeStatus,
)

LINK = "link"
_PURPOSE = "notice-link/v1"


@dataclass(frozen=True)
class LinkTracker:
    """Signs and reads the member-specific link of a notice (see the module docstring)."""

    base_url: str
    keys: tuple[bytes, ...]  # the current key's (signs), then previous keys' (still verify)

    def url(self, notice_id: int, member_id: int) -> str:
        message = f"{notice_id}.{member_id}"
        return f"{self.base_url}/go/{message}.{sign(self.keys[0], message)}"

    def read(self, token: str) -> tuple[int, int] | None:
        notice, _, rest = token.partition(".")
        member, _, signature = rest.partition(".")
        if not (notice.isdigit() and member.isdigit() and len(notice) < 10 and len(member) < 10):
            return None
        return (int(notice), int(member)) if verify_any(self.keys, f"{notice}.{member}", signature) else None


def link_tracker(public_url: str | None, secret_key: str | SecretStr | None,
                 previous_keys: Sequence[str] = ()) -> LinkTracker | None:
    """A tracker when Herald has a public address and a key to sign with; None otherwise. Links
    signed with a previous key (HERALD_SECRET_KEY_PREVIOUS) are still read."""
    if not public_url or not secret_key:
        return None
    return LinkTracker(public_url.rstrip("/"), signing_keys(secret_key, _PURPOSE, previous_keys))


async def open_tracked_link(tracker: LinkTracker, token: str, *, now: datetime) -> str | None:
    """Count the press behind a tracked link and return where to send the member; None when the
    token is not valid, the notice has no link any more or was retracted."""
    found = tracker.read(token)
    if found is None:
        return None
    notice = await Notice.get_or_none(id=found[0])
    if notice is None or not notice.link or notice.status == NoticeStatus.RETRACTED.value:
        return None
    delivery = await Delivery.filter(notice_id=notice.id, member_id=found[1],
                                     status=DeliveryStatus.DELIVERED.value).first()
    if delivery is not None:
        await _count(notice.id, found[1], LINK, delivery.platform, delivery.variant, now=now)
    return notice.link


async def record_press(notice_id: int, kind: str, *, platform: str, workspace_id: str, user_id: str,
                       now: datetime) -> bool:
    """Count a press by the member the notice was delivered to; False for anyone else (e.g. a
    forwarded message). The first press is an audit event; later ones only raise the count."""
    delivery = await Delivery.filter(
        notice_id=notice_id, platform=platform, status=DeliveryStatus.DELIVERED.value,
        account__workspace_external_id=workspace_id, account__user_id=user_id).first()
    if delivery is None:
        return False
    await _count(notice_id, delivery.member_id, kind, platform, delivery.variant, now=now)  # type: ignore[attr-defined]
    return True


async def _count(notice_id: int, member_id: int, kind: str, platform: str, variant: str, *, now: datetime) -> None:
    try:
        async with in_transaction() as conn:
            await NoticeInteraction.create(notice_id=notice_id, member_id=member_id, kind=kind, platform=platform,
                                           first_at=now, using_db=conn)
            await record([audit_event("notice.button_pressed", now=now, notice_id=notice_id, member_id=member_id,
                                      button=kind, platform=platform, variant=variant or None)], using_db=conn)
    except IntegrityError:
        await NoticeInteraction.filter(notice_id=notice_id, member_id=member_id, kind=kind).update(
            presses=F("presses") + 1)
