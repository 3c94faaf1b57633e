"""The sandbox's inbound side: each sample member's inbox (what the sandbox channel stored, drawn
as Slack or as Teams would draw it) and its buttons and question box.

Like the Slack and Teams handlers, this only turns a click into the core call those handlers
make (`acks.acknowledge`, `give_feedback`, `Herald.hand_off_question`, `complete_step`,
`Herald.answer_question`) with the member's sandbox identity; the core cannot tell the sandbox
from a real platform. The inbox is for signed-in staff trying Herald out, and exists only in
sandbox mode (its own database of sample people).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from markupsafe import Markup
from tortoise.functions import Count

from bot.channels.teams_cards import ACK_VERB
from bot.common.errors import NotFound, UserError
from bot.console.blockkit import blocks_html
from bot.console.web import CSRF_FIELD, Page, page, whole_number
from bot.core.notices import acks
from bot.core.notices.views import ACK_ACTION
from bot.core.onboarding.assistant import (
    ASK_CAM_ACTION,
    HELPFUL_ACTION,
    NOT_HELPFUL_ACTION,
    give_feedback,
)
from bot.core.onboarding.journeys import DONE_ACTION, complete_step
from bot.core.ports import DirectMessage, Recipient
from bot.service import Herald
from storage.models import Member, Platform, PlatformAccount, Question, SandboxMessage

PLATFORM = Platform.SANDBOX.value
LOOKS = ("slack", "teams")
NOTES = {"acknowledged": "Acknowledged. The notice now shows who acknowledged it, and when.",
         "feedback": "Thanks for the feedback.", "handed-off": "Passed to your CAM; see the message below.",
         "done": "Marked done.", "asked": "The assistant answered below.", "nothing": "Nothing to do."}
ACTIONS = {ACK_ACTION, HELPFUL_ACTION, NOT_HELPFUL_ACTION, ASK_CAM_ACTION, DONE_ACTION}
INBOX_PAGE = 30


async def _account(member_id: int) -> PlatformAccount:
    account = await PlatformAccount.filter(member_id=member_id, platform=PLATFORM).select_related(
        "member__organisation").first()
    if account is None:
        raise NotFound("That sample member has no sandbox inbox.")
    return account


def _recipient(account: PlatformAccount) -> Recipient:
    return Recipient(workspace_id=account.workspace_external_id, user_id=account.user_id,
                     dm_channel=account.user_id, display_name=account.member.name)


def button_form(member_id: int, csrf: str, look: str) -> Any:
    """A Block Kit button as a form that POSTs the click, the way Slack would send it."""
    def render(element: dict[str, Any]) -> Markup:
        return Markup(
            '<form method="post" action="/console/sandbox/{m}/action" class="sk-form">'
            '<input type="hidden" name="{cf}" value="{csrf}"><input type="hidden" name="look" value="{look}">'
            '<input type="hidden" name="action_id" value="{a}"><input type="hidden" name="value" value="{v}">'
            '<button type="submit" class="sk-button {style}">{label}</button></form>').format(
            m=member_id, cf=CSRF_FIELD, csrf=csrf, look=look, a=element.get("action_id", ""),
            v=element.get("value", ""), style=element.get("style", ""),
            label=element.get("text", {}).get("text", ""))
    return render


def _from_teams(verb: str, data: dict[str, Any]) -> tuple[str, str]:
    """An Action.Execute (verb + data) as the platform-neutral action id and value."""
    if verb == ACK_VERB:
        return ACK_ACTION, f"{data.get('notice_id', '')}:{data.get('revision', '')}".rstrip(":")
    return verb, str(data.get("value", ""))


def _card_data(text: str) -> dict[str, Any]:
    """An Action.Execute's data as posted by the inbox page: a JSON object, else refused."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UserError("This button is not supported in the sandbox.")
    return data


def add_sandbox_routes(app: web.Application, herald: Herald) -> None:
    channel = herald.channels[PLATFORM]

    async def say(account: PlatformAccount, text: str) -> None:
        await channel.send_message(_recipient(account), DirectMessage(title=text, lines=()))

    async def index(current: Page) -> web.StreamResponse:
        accounts = await PlatformAccount.filter(platform=PLATFORM, member__active=True).select_related(
            "member__organisation").order_by("member__organisation__name", "member__name")
        counts = {r["user_id"]: r["n"] for r in await _message_counts()}
        return current.render("sandbox.html", accounts=accounts, counts=counts)

    async def inbox(current: Page) -> web.StreamResponse:
        account = await _account(whole_number(current.request.match_info["member"]))
        look = current.request.query.get("look", "slack")
        look = look if look in LOOKS else "slack"
        messages = await SandboxMessage.filter(user_id=account.user_id).order_by("-id").limit(INBOX_PAGE)
        asked = await Question.filter(member_id=account.member.id, platform=PLATFORM).order_by("-id").limit(INBOX_PAGE)
        timeline = sorted([("herald", m.created_at, m.id, m) for m in messages]
                          + [("me", q.asked_at, q.id, q) for q in asked], key=lambda t: (t[1], t[0] == "herald", t[2]))
        render = button_form(account.member.id, current.csrf, look)
        items = []
        for who, moment, _, row in timeline:
            if who == "me":
                items.append({"who": who, "at": moment, "text": row.text, "message": None})
            elif look == "slack":
                items.append({"who": who, "at": moment, "html": blocks_html(row.blocks, button=render),
                              "message": row})
            else:
                items.append({"who": who, "at": moment, "card": json.dumps(row.card, ensure_ascii=False),
                              "message": row})
        note = NOTES.get(current.request.query.get("note", ""), "")
        return current.render("inbox.html", account=account, member=account.member, items=items, look=look,
                              note=note)

    async def act(current: Page) -> web.StreamResponse:
        member_id = whole_number(current.request.match_info["member"])
        account = await _account(member_id)
        form = await current.form()
        look = form.get("look", "slack") if form.get("look") in LOOKS else "slack"
        if form.get("verb"):
            action, value = _from_teams(form["verb"], _card_data(form.get("data") or "{}"))
        else:
            action, value = form.get("action_id", ""), form.get("value", "")
        # the Acknowledge button's value also carries the revision its copy shows: "<id>:<revision>"
        value, _, revision = value.partition(":") if action == ACK_ACTION else (value, "", "")
        if action not in ACTIONS or not value.isdigit() or not (revision.isdigit() or revision == ""):
            raise UserError("This button is not supported in the sandbox.")
        note = await _dispatch(action, int(value), account, int(revision) if revision else None)
        location = f"/console/sandbox/{member_id}?look={look}&note={note}"
        if current.request.headers.get("Accept", "").startswith("application/json"):
            return current.json({"ok": True, "location": location})
        return current.redirect(location)

    async def _dispatch(action: str, value: int, account: PlatformAccount, revision: int | None = None) -> str:
        now = herald.clock.now()
        member: Member = account.member
        if action == ACK_ACTION:
            result = await acks.acknowledge(value, platform=PLATFORM, workspace_id=account.workspace_external_id,
                                            user_id=account.user_id, now=now, seen_revision=revision)
            await herald.update_acknowledged_copies(result)
            return "acknowledged"
        if action in (HELPFUL_ACTION, NOT_HELPFUL_ACTION):
            await give_feedback(value, member, helpful=action == HELPFUL_ACTION, now=now)
            return "feedback"
        if action == ASK_CAM_ACTION:
            await say(account, await herald.hand_off_question(value, member))
            return "handed-off"
        await complete_step(value, platform=PLATFORM, workspace_id=account.workspace_external_id,
                            user_id=account.user_id, now=now, channels=herald.channels)
        herald.outbox.wake()
        return "done"

    async def ask(current: Page) -> web.StreamResponse:
        member_id = whole_number(current.request.match_info["member"])
        account = await _account(member_id)
        form = await current.form()
        text = form.get("question", "").strip()
        look = form.get("look", "slack") if form.get("look") in LOOKS else "slack"
        if not text:
            raise UserError("Type a question first.")
        await herald.answer_question(account.member, text, platform=PLATFORM, recipient=_recipient(account))
        return current.redirect(f"/console/sandbox/{member_id}?look={look}&note=asked")

    app.router.add_get("/console/sandbox", page(herald, index))
    app.router.add_get("/console/sandbox/{member}", page(herald, inbox))
    app.router.add_post("/console/sandbox/{member}/action", page(herald, act))
    app.router.add_post("/console/sandbox/{member}/ask", page(herald, ask))


async def _message_counts() -> list[dict[str, Any]]:
    return await SandboxMessage.all().annotate(n=Count("id")).group_by("user_id").values("user_id", "n")

