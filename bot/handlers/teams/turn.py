"""One inbound Teams activity as Herald sees it (`Turn`), and the context a card action runs in
(`Invoke`) with the two ways it can answer (a card in place, or a short message)."""

from __future__ import annotations

import html
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from microsoft_agents.activity import Activity

from bot.common.text import without_control_characters
from bot.core.commands.runner import StaffCommands
from bot.core.ports import Recipient
from bot.handlers.teams.texts import ALREADY_RECEIVED
from bot.service import Herald
from storage.models import Staff

CARD_RESPONSE = "application/vnd.microsoft.card.adaptive"
MESSAGE_RESPONSE = "application/vnd.microsoft.activity.message"


@dataclass(frozen=True)
class Turn:
    """The parts of an inbound activity Herald uses."""

    activity: Activity
    tenant_id: str
    aad_object_id: str
    user_id: str
    conversation_id: str
    service_url: str
    name: str
    personal: bool  # a 1:1 chat with Herald (not a group chat or a channel: the app is personal-scope only)

    @property
    def recipient(self) -> Recipient:
        return Recipient(workspace_id=self.tenant_id, user_id=self.aad_object_id, dm_channel=self.conversation_id,
                         service_url=self.service_url)


def turn_of(activity: Activity) -> Turn | None:
    sender, conversation = activity.from_property, activity.conversation
    if sender is None or conversation is None or not activity.service_url:
        return None
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant_data = channel_data.get("tenant")
    tenant = tenant_data.get("id") if isinstance(tenant_data, dict) else None
    tenant = tenant if isinstance(tenant, str) and tenant else (conversation.tenant_id or "")
    aad = (sender.aad_object_id or "").lower()
    tenant = tenant.lower()
    if not tenant or not aad:
        return None
    personal = (conversation.conversation_type or "personal") == "personal" and not conversation.is_group
    return Turn(activity, tenant, aad, sender.id or "", conversation.id or "", activity.service_url, sender.name or "",
                personal)


def client_timezone(activity: Activity) -> str:
    """The sender's device time zone, as Teams reports it with each message (an entity of type
    clientInfo, e.g. "America/Los_Angeles"); "" when it does not."""
    for entity in activity.entities or []:
        if getattr(entity, "type", None) == "clientInfo":
            zone = getattr(entity, "timezone", None)
            return zone if isinstance(zone, str) else ""
    return ""


def plain_text(text: str) -> str:
    """Teams wraps mentions as <at>Herald</at> and may send HTML entities; keep the words (and no
    control characters: see bot.common.text)."""
    return without_control_characters(html.unescape(re.sub(r"<at>.*?</at>", "", text))).strip()


@dataclass
class Invoke:
    """An `Action.Execute` press: who pressed it, the button's data, and how to talk back."""

    herald: Herald
    turn: Turn
    verb: str
    data: dict[str, Any]
    commands: StaffCommands
    staff: Staff | None  # the presser, if they are vendor staff
    reply: Callable[[dict[str, Any]], Awaitable[None]]  # a new message in the same chat

    def number(self, key: str) -> int:
        """An integer field of the button's data (ValueError → "not valid any more")."""
        value = self.data.get(key, 0) or 0
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{key} is not a number")
        number = int(value)
        if not 0 <= number < 2**63:  # a database id; a larger one would overflow a bigint column
            raise ValueError(f"{key} is out of range")
        return number


VerbHandler = Callable[[Invoke], Awaitable[web.Response]]


def card_response(content: dict[str, Any]) -> web.Response:
    """Replace the pressed card with `content`."""
    return web.json_response({"statusCode": 200, "type": CARD_RESPONSE, "value": content})


def message_response(text: str) -> web.Response:
    """Leave the card as it is and show `text` to the presser."""
    return web.json_response({"statusCode": 200, "type": MESSAGE_RESPONSE, "value": text})


class InvokeAnswers:
    """The latest invoke answers this process gave, by request key (`bot.core.replays`). The Bot
    Connector sends an invoke again, same id, when it lost the answer; the press was acted on once
    already, so the repeat gets the same answer, or, once it is forgotten (or another replica gave
    it), a short message that changes nothing: never an empty body, which Teams shows as an error."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size  # a retry comes within seconds; a card answer is a few kilobytes
        self._answers: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def keep(self, key: str, answer: web.Response) -> None:
        if not isinstance(answer.body, bytes):
            return
        self._answers[key] = (answer.status, answer.body)
        self._answers.move_to_end(key)
        while len(self._answers) > self.size:
            self._answers.popitem(last=False)

    def again(self, key: str) -> web.Response:
        kept = self._answers.get(key)
        if kept is None:
            return message_response(ALREADY_RECEIVED)
        status, body = kept
        return web.Response(status=status, body=body, content_type="application/json")
