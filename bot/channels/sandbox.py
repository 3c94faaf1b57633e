"""The sandbox platform: an outbound channel whose "chat client" is an inbox page in the console.

It implements the same `Channel` port as Slack and Teams and renders with their renderers: each
message is stored as the Block Kit blocks Slack would get and the Adaptive Card Teams would get,
so the inbox shows exactly what a partner would see. Nothing leaves Herald. The conversation of
a member is their sandbox user id; a message's id is its row id.

Idempotent like the real platforms should be: a notice delivery is stored at most once (the
unique `delivery_id`), so a retried or recovered delivery finds the message it already wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bot.channels.slack_blocks import direct_message_blocks, notice_blocks
from bot.channels.teams_cards import direct_message_card, notice_card, notice_summary
from bot.common.clock import Clock
from bot.core.notices.views import NoticeView
from bot.core.ports import DirectMessage, MessageRef, Outcome, Recipient
from storage.models import Platform, SandboxMessage

WORKSPACE = "sandbox"  # the one "workspace" every sandbox account belongs to


class SandboxChannel:
    platform = Platform.SANDBOX.value

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    # The delivery engine's budgets (the port being extended on main): the sandbox has no limits.
    def budgets(self) -> Mapping[str, Any]:
        return {}

    def spends(self, operation: Any, recipient: Recipient | None = None, **_: Any) -> tuple[Any, ...]:
        return ()

    async def deliver(self, recipient: Recipient, view: NoticeView, *, delivery_id: int,
                      maybe_sent: bool, wanted: bool = True, since: datetime | None = None,
                      read_to: str = "") -> Outcome:
        earlier = await SandboxMessage.get_or_none(delivery_id=delivery_id)
        if earlier is None and not wanted:
            return Outcome.not_posted()
        if earlier is None:
            earlier, _ = await SandboxMessage.get_or_create(
                delivery_id=delivery_id,
                defaults=self._rendered(view) | {"user_id": recipient.user_id, "notice_id": view.notice_id,
                                                 **self._stamps()})
        return Outcome.delivered(_ref(recipient.user_id, earlier), dm_channel=recipient.user_id)

    async def update(self, workspace_id: str, ref: MessageRef, view: NoticeView) -> None:
        message = await SandboxMessage.get_or_none(id=int(ref.message_id), user_id=ref.channel_id)
        if message is None:
            raise LookupError(f"sandbox message {ref.message_id} does not exist")
        await SandboxMessage.filter(id=message.id).update(
            **self._rendered(view), version=message.version + 1, updated_at=self.clock.now())

    async def send_message(self, recipient: Recipient, message: DirectMessage) -> Outcome:
        row = await SandboxMessage.create(user_id=recipient.user_id, title=message.title[:300],
                                          blocks=direct_message_blocks(message),
                                          card=direct_message_card(message), **self._stamps())
        return Outcome.delivered(_ref(recipient.user_id, row), dm_channel=recipient.user_id)

    async def close(self) -> None:
        return None

    @staticmethod
    def _rendered(view: NoticeView) -> dict[str, Any]:
        return {"title": notice_summary(view)[:300], "blocks": notice_blocks(view), "card": notice_card(view)}

    def _stamps(self) -> dict[str, datetime]:
        now = self.clock.now()
        return {"created_at": now, "updated_at": now}


def _ref(user_id: str, message: SandboxMessage) -> MessageRef:
    return MessageRef(channel_id=user_id, message_id=str(message.id))
