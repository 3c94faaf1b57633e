"""What Slack listeners of every kind share: the apology, form reading, and turning a piece of work
into a short ephemeral reply (a person's mistake in words, anything else as an apology + log)."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.slack import rate_limit_wait
from bot.channels.slack_blocks import escape, reader_time
from bot.common.errors import FieldError, UserError
from bot.core.commands.parser import SendCommand, parse_deadline, parse_link
from bot.core.delivery.messages import Target, queue_throttled_reply
from bot.core.directory.slack_orgs import directory_ids as org_directory_ids
from bot.core.directory.slack_orgs import filed_under
from bot.core.directory.staff import staff_for_slack
from bot.core.directory.workspaces import is_connected
from bot.core.notices import sending
from bot.core.onboarding.assistant import member_for
from bot.core.ports import DirectMessage, Recipient
from bot.service import Herald
from storage.models import Member, Platform, Staff

log = logging.getLogger(__name__)

SORRY = "Sorry, something went wrong on Herald's side. The details are in its log."
FROM_ELSEWHERE = ("You're using Herald from another organisation's Slack (Slack Connect), which Herald is not "
                  "connected to, so I can't act for you here. Use Herald in your own workspace, or ask your "
                  "channel account manager.")
NOT_A_MEMBER = ("I deliver your vendor's partner notices here. I don't recognise you as a partner contact yet; "
                "ask your channel account manager to add you to the partner directory.")


def typed_text(text: object) -> str:
    """What the person typed, from the `text` of a slash command or a message event.

    Slack sends its three control characters as entities in every text it delivers ("&" as
    &amp;, "<" as &lt;, ">" as &gt;: api.slack.com/docs/formatting) and encodes nothing else, so
    exactly those three are decoded (html.unescape would also turn a typed "&copy;" into "©").
    &amp; goes last: "&amp;lt;" is the "&lt;" the person typed. Slack's own markup
    (`<@U123>`, `<!channel>`, `<https://...|label>`) is left as it came; Herald escapes every text
    it posts (`escape`), so a decoded "<" never becomes a mention or a link there."""
    if not isinstance(text, str):
        return ""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def problem_text(emoji: str, exc: Exception) -> str:
    """A UserError as a Slack reply: its text may quote what the person typed, so it is escaped."""
    return f"{emoji} {escape(str(exc))}"


class StaleData(UserError):
    """A button's value or a modal's metadata that is not one of Herald's ids (crafted, or from an
    old message): the person gets this sentence, the log one warning line."""

    def __init__(self) -> None:
        super().__init__("That button's data is not valid any more.")


def record_id(value: object) -> int:
    """A database id carried by a button or a modal (StaleData for anything else)."""
    text = value.strip() if isinstance(value, str) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 18:  # 18 digits always fit a bigint
        raise StaleData()
    return int(text)


class FromElsewhere(UserError):
    """A Slack Connect user (of another company's team, in a shared conversation) whose home team
    Herald is not connected to: never taken for a directory member of the workspace they act in."""

    def __init__(self) -> None:
        super().__init__(FROM_ELSEWHERE)


@dataclass(frozen=True)
class SlackPerson:
    """Who pressed, submitted or wrote, as Herald knows them.

    `install`: the installation whose token answers them (the organisation's enterprise id for
    an org-wide install of an Enterprise Grid org, else the workspace where they acted).
    `workspace`: what the directory files them under: for an org-wide install the org's
    enterprise id, or the org's workspace their entry names (user ids are org-wide there), else
    their home team (a Slack Connect user's own team,
    not the one whose shared conversation they act in). `foreign`: a Slack Connect user whose
    home team Herald is not connected to."""

    install: str
    workspace: str
    user: str
    foreign: bool = False


def install_of(team_id: str | None, enterprise_id: str | None, org_wide: bool | None) -> str:
    """The installation (a Workspace row's external id) serving a request, as bolt reads it."""
    return enterprise_id if org_wide and enterprise_id else (team_id or "")


async def slack_person(*, team_id: str | None, enterprise_id: str | None, org_wide: bool | None, user_id: str,
                       home_team: str | None) -> SlackPerson:
    """Slack's ids of a request, as a SlackPerson. Reads the database only for a user whose home
    team is not the one they act in (Slack Connect)."""
    install = install_of(team_id, enterprise_id, org_wide)
    if org_wide and enterprise_id:
        filed = await filed_under(user_id, await org_directory_ids(enterprise_id, team_id or ""))
        return SlackPerson(install, filed or enterprise_id, user_id)
    home = home_team or team_id or ""
    foreign = home != (team_id or "") and not await is_connected(Platform.SLACK.value, home)
    return SlackPerson(install, home, user_id, foreign)


async def person_of(body: dict[str, Any]) -> SlackPerson:
    """The person behind an interaction (a press, a modal's submission). FromElsewhere for a
    Slack Connect user of a team Herald is not connected to. With an org-wide install Slack may
    send `"team": null` (a press outside any workspace of the org): the user's team is used."""
    team, user = body.get("team") or {}, body["user"]
    enterprise = body.get("enterprise")
    enterprise_id = enterprise.get("id") if isinstance(enterprise, dict) else enterprise or team.get("enterprise_id")
    org_wide = body.get("is_enterprise_install") in (True, "true")
    person = await slack_person(team_id=team.get("id") or user.get("team_id"), enterprise_id=enterprise_id,
                                org_wide=org_wide, user_id=user["id"], home_team=user.get("team_id"))
    if person.foreign:
        raise FromElsewhere()
    return person


async def command_person(body: dict[str, Any]) -> SlackPerson:
    """The person behind a slash command: its form names the workspace (`team_id`) and, for an
    org-wide install, the org (`enterprise_id`, `is_enterprise_install`)."""
    return await slack_person(team_id=body.get("team_id"), enterprise_id=body.get("enterprise_id"),
                              org_wide=body.get("is_enterprise_install") in (True, "true"),
                              user_id=body["user_id"], home_team=None)


def pressed_message_ts(body: dict[str, Any]) -> str:
    """The ts of the message whose button was pressed ("" for a press outside a message)."""
    container, message = body.get("container"), body.get("message")
    ts = (container.get("message_ts") if isinstance(container, dict) else None) or (
        message.get("ts") if isinstance(message, dict) else None)
    return ts if isinstance(ts, str) else ""


async def directory_ids(body: dict[str, Any]) -> dict[str, str]:
    """The core's `workspace_id` and `user_id` of the person behind an interaction (person_of)."""
    person = await person_of(body)
    return {"workspace_id": person.workspace, "user_id": person.user}


async def staff_of(body: dict[str, Any]) -> Staff | None:
    """The staff member who clicked or submitted (None for anyone else)."""
    person = await person_of(body)
    return await staff_for_slack(person.workspace, person.user)


async def member_of(body: dict[str, Any]) -> Member | None:
    """The partner member who clicked (None for anyone else)."""
    person = await person_of(body)
    return await member_for(Platform.SLACK.value, person.workspace, person.user)


async def respond_or_explain(respond, work: Awaitable[dict[str, Any] | None]) -> None:  # noqa: ANN001
    """Await `work` (a coroutine producing respond() kwargs, or None when there is nothing to post);
    errors become a short message."""
    try:
        payload = await work
    except UserError as exc:
        await respond(text=problem_text(":warning:", exc), response_type="ephemeral", replace_original=False)
        return
    except Exception:
        log.exception("Slack command failed")
        await respond(text=SORRY, response_type="ephemeral", replace_original=False)
        return
    if payload is not None:
        await respond(response_type="ephemeral", **payload)


async def open_form(client: AsyncWebClient, trigger_id: str, view: dict[str, Any],
                    respond: Callable[..., Awaitable[Any]] | None) -> bool:
    """views.open, after the acknowledgement (it needs the click's or command's trigger id). Slack
    refuses it when the trigger id is more than 3 s old (`expired_trigger_id`: a slow database
    before the ack, a busy host) or the view is invalid; the person would see nothing at all, so
    they are told in a short ephemeral reply, and the log has Slack's error. False if not opened."""
    try:
        await client.views_open(trigger_id=trigger_id, view=view)
        return True
    except SlackApiError as exc:
        error = str(exc.response.get("error", "")) if exc.response is not None else ""
        log.warning("Slack did not open the form %s: %s", view.get("callback_id", ""), error or exc)
        text = (":warning: Slack did not open the form in time; please try again." if error == "expired_trigger_id"
                else ":warning: Slack could not open the form; please try again. Herald's log has the details.")
    except Exception:
        log.exception("opening the form %s failed", view.get("callback_id", ""))
        text = SORRY
    if respond is not None:  # a press in the App Home has no response_url: the log is all there is
        await respond(text=text, response_type="ephemeral", replace_original=False)
    return False


def direct_message_respond(client: AsyncWebClient, herald: Herald, body: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    """A respond() for work a modal's submission started after its answer (a view_submission has no
    response_url): the reply goes to the person's direct messages with Herald. It is not written
    into the modal, which Slack may still be replacing with the answer's view. Posted to the user id,
    which lands in the app's DM with them, as deliveries do: no conversations.open (Tier 3).

    A reply Slack throttles (429: the DM's 1 message a second, or the workspace's chat.postMessage
    budget a broadcast is spending) is queued in the outbox instead (`queue_throttled_reply`, keyed
    by the modal's view id) and reaches the person when the workspace's pause is over."""
    user_id = body["user"]["id"]

    async def respond(*, text: str, **_: Any) -> None:
        try:
            await client.chat_postMessage(channel=user_id, text=text)
        except SlackApiError as exc:
            if rate_limit_wait(exc) is None:
                log.warning("could not send %s a direct message (%s): %s", user_id, exc.response.get("error"), text)
                return
            person = await person_of(body)
            staff = await staff_for_slack(person.workspace, person.user)
            # a view's id is Slack's own for this modal (a replayed submission has it too); without
            # one, the moment: never the key of an earlier reply, which would swallow this one
            reply_id = (body.get("view") or {}).get("id") or herald.clock.now().isoformat()
            queued = await queue_throttled_reply(
                key=f"slack:{person.install}:{user_id}:{reply_id}",
                target=Target(Platform.SLACK.value, Recipient(workspace_id=person.install, user_id=user_id)),
                message=DirectMessage(title=_plain_text(text), lines=()), now=herald.clock.now(),
                staff_id=staff.id if staff is not None else None)
            if queued:
                herald.outbox.wake()
            log.info("Slack throttled a direct message to %s; %s", user_id, "queued" if queued else "already queued")
    return respond


def _plain_text(mrkdwn: str) -> str:
    """A reply written in mrkdwn as the plain text of a DirectMessage's title (rendered escaped
    again): its markup and escapes taken out."""
    return html.unescape(mrkdwn.replace("*", "").replace("`", ""))


async def send_previewed(herald: Herald, notice_value: object, body: dict[str, Any],
                         ack: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """A preview's Send (the preview message's button, or the preview modal's submission), `ack`
    being the listener's acknowledgement. The send is stored first (`request_send`: one short
    transaction, well inside Slack's 3 s), then Slack is answered: once Slack has its 200 it never
    sends the click again, so a process killed after the ack must find the send in the database
    (the next tick publishes it and tells the CAM). The outbox rows come after the ack
    (`finish_send`: seconds for a large audience), then the outbox is woken; returns the reply that
    says how it went. A refused Send is acknowledged too, and its UserError raised after."""
    try:
        staff = await staff_of(body)
        requested = await sending.request_send(record_id(notice_value), staff, now=herald.clock.now())
    finally:
        await ack()
    if requested.already or not requested.queued:  # a second press, or scheduled for later
        return {"replace_original": True, "text": sent_text(requested)}
    actor = staff.email  # type: ignore[union-attr] - request_send refused anyone who is not staff
    return {"replace_original": True, "text": await _finish_requested(herald, requested.notice.id, actor)}


async def _finish_requested(herald: Herald, notice_id: int, actor: str) -> str:
    """`finish_send` of a Send stored before the ack; what to tell the CAM."""
    try:
        result = await sending.finish_send(notice_id, herald.catalog, actor=actor,
                                           now=herald.clock.now(), platform_policy=herald.settings.platform_policy)
    except Exception:  # noqa: BLE001 - the notice stays due: the tick publishes it, or fails it and says why
        log.exception("writing the outbox of notice %s after Slack was answered failed", notice_id)
        return (f":warning: Notice #{notice_id} could not be queued just now; Herald tries again at its next tick "
                "and tells you in a direct message when it is out, or why not.")
    herald.outbox.wake()
    if result.already:  # the tick (this replica or another) got there first, or it was cancelled in between
        return f"Notice #{notice_id} is {result.notice.status}. Follow it with `/herald status {notice_id}`."
    return sent_text(result)


def sent_text(result: sending.SendResult) -> str:
    n = result.notice
    if result.already:
        state = "being sent" if result.queued else n.status
        return f"Notice #{n.id} is already {state}; nothing new was sent. `/herald status {n.id}`"
    if n.status == "scheduled" and n.scheduled_at:
        return (f":calendar: Notice #{n.id} *{escape(n.title)}* is scheduled for {reader_time(n.scheduled_at)}. "
                f"`/herald scheduled` lists it; `/herald cancel {n.id}` cancels it.")
    return (f":outbox_tray: Sending notice #{n.id} *{escape(n.title)}* to {result.recipients} recipients. "
            f"Follow it with `/herald status {n.id}`.")


def form_value(values: dict, block: str) -> str:
    element = values.get(block, {}).get("value", {})
    if element.get("type") == "static_select":
        return (element.get("selected_option") or {}).get("value", "")
    return (element.get("value") or "").strip()


def command_from_form(values: dict) -> SendCommand:
    link, deadline = form_value(values, "link"), form_value(values, "deadline")
    try:
        link = parse_link(link) if link else ""
    except UserError as exc:
        raise FieldError("link", str(exc)) from None
    try:
        parsed_deadline = parse_deadline(deadline) if deadline else None
    except UserError as exc:
        raise FieldError("deadline", str(exc)) from None
    return SendCommand(importance=form_value(values, "importance"), topic=form_value(values, "topic"),
                       audience=form_value(values, "audience"), title=form_value(values, "title"),
                       body=form_value(values, "body"), link=link, deadline=parsed_deadline)


def field_of(message: str, default: str = "audience") -> str:
    """Which form field a validation message is about (so Slack shows it under that input)."""
    for field, words in (("deadline", ("deadline",)), ("title", ("title",)), ("body", ("body",)),
                         ("topic", ("topic",)), ("importance", ("importance",)), ("link", ("link",))):
        if any(w in message for w in words):
            return field
    return default
