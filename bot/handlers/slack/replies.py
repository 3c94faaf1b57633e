"""Slack replies for `/herald` sub-commands: runs them through the platform-neutral
`StaffCommands` and renders the result as the keyword arguments of `respond(...)`."""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.report_lines import report_text
from bot.channels.slack import rate_limit_wait
from bot.channels.slack_blocks import SLACK_REPLY, escape, preview_blocks, reader_time, status_text
from bot.channels.slack_surveys import survey_preview_blocks
from bot.channels.slack_upload import upload_file
from bot.channels.survey_lines import experiment_text
from bot.core.commands.parser import Command
from bot.core.commands.runner import (
    Cancelled,
    Handoffs,
    Paused,
    Progress,
    ReportReady,
    Resumed,
    Retracted,
    Scheduled,
    StaffCommands,
    handoffs_text,
    progress_text,
    scheduled_more,
)
from bot.core.directory.console_access import SignInLink
from bot.core.notices.revisions import EditResult
from bot.core.notices.sending import Preview
from bot.core.notices.status import NoticeStatusReport
from bot.core.surveys.creating import SurveyPreview
from bot.service import Herald
from storage.models import Staff

Reply = dict[str, Any]

log = logging.getLogger(__name__)

# A report's Slack call that Slack throttles (429) is tried again after its Retry-After: the first
# try and three more, each pause at most REPORT_PAUSE s and REPORT_WAIT s in all for the reply (it
# goes through the command's response_url, good for 30 minutes); past that the CAM is told when to
# try again.
REPORT_ATTEMPTS = 4
REPORT_PAUSE = 30.0
REPORT_WAIT = 60.0


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


class SlackCommands:
    sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)  # tests wait on an event instead

    def __init__(self, herald: Herald) -> None:
        self.herald = herald
        self.core = StaffCommands(herald.catalog, herald.clock, wake_outbox=herald.outbox.wake, platform="slack")

    async def run(self, command: Command, staff: Staff | None, *, client: AsyncWebClient, user_id: str) -> Reply:
        result = await self.core.run(command, staff)
        if isinstance(result, ReportReady):
            return await self.deliver_report(result, client=client, user_id=user_id)
        if isinstance(result, SignInLink):
            return {"text": console_link_text(self.herald.sign_in_url(result.token))}
        return render(result)

    async def report(self, notice_id: int, staff: Staff | None, *, client: AsyncWebClient, user_id: str) -> Reply:
        return await self.deliver_report(await self.core.report(notice_id, staff), client=client, user_id=user_id)

    async def deliver_report(self, ready: ReportReady, *, client: AsyncWebClient, user_id: str) -> Reply:
        """The summary in the reply, the CSV as a file in the requester's DM (Slack's external upload).
        The CSV is written to a temporary file as the report streams, and uploaded from it in
        chunks: a large notice's report is never whole in memory."""
        from bot.core.compliance.reports import record_report_delivered, report_chunks

        notice_id = ready.notice.id
        with tempfile.TemporaryFile() as spool:
            async for chunk in report_chunks(notice_id, "csv", now=self.herald.clock.now(), actor=ready.staff.email,
                                           reader=ready.staff):
                spool.write(chunk.encode("utf-8"))
            busy = await self._share_report(client, spool, notice_id, user_id)
        if busy is not None:
            return {"text": summary_text(ready, tail=[
                f":hourglass: Slack is busy, so the CSV report could not be sent; try again in {math.ceil(busy)} s "
                f"(`/herald report {notice_id}`)."])}
        await record_report_delivered(notice_id, now=self.herald.clock.now(), actor=ready.staff.email, platform="slack")
        return {"text": summary_text(ready)}

    async def _share_report(self, client: AsyncWebClient, spool: BinaryIO, notice_id: int, user_id: str) -> float | None:
        """Open the requester's DM (conversations.open, Tier 3) and upload the CSV there (Tier 4),
        each Slack call tried again after a 429 (`_Patience`). Returns None when the report was
        shared, else the wait Slack last asked for."""
        patience = _Patience(self.sleep)
        try:
            dm = (await patience(lambda: client.conversations_open(users=user_id)))["channel"]["id"]
            await upload_file(client, spool, filename=f"notice-{notice_id}-report.csv",
                              title=f"Acknowledgement report, notice #{notice_id}", channel=dm,
                              initial_comment=f"Acknowledgement report for notice #{notice_id}", calling=patience)
        except _SlackBusy as busy:
            log.warning("Slack kept throttling the report of notice %s (Retry-After %s s)", notice_id, busy.wait)
            return busy.wait
        return None


class _SlackBusy(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(f"Slack asked to wait {wait} s")
        self.wait = wait


class _Patience:
    """The Slack calls of one reply made outside the outbox (a report's upload): a 429 is Slack
    saying "in N seconds", so the call is tried again after the Retry-After, at most REPORT_PAUSE s
    each and REPORT_WAIT s in all for the reply (as the Teams handler does for its replies); past
    that `_SlackBusy` says how long Slack last asked to wait."""

    def __init__(self, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.sleep, self.waited = sleep, 0.0

    async def __call__(self, call: Callable[[], Awaitable[Any]]) -> Any:
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            try:
                return await call()
            except SlackApiError as exc:
                wait = rate_limit_wait(exc)
                if wait is None:
                    raise
                pause = min(wait, REPORT_PAUSE)
                if attempt == REPORT_ATTEMPTS or self.waited + pause > REPORT_WAIT:
                    raise _SlackBusy(wait) from exc
                await self.sleep(pause)
                self.waited += pause
        raise AssertionError("not reached: the last attempt returns or raises")


def render(result: Any) -> Reply:  # noqa: PLR0911 - one branch per result type
    if isinstance(result, Preview):
        return {"blocks": preview_blocks(result.notice, result.topic.title, result.recipients, result.warnings,
                                         variants=result.variants, share=result.share),
                "text": f"Preview of notice #{result.notice.id}"}
    if isinstance(result, SurveyPreview):
        return {"blocks": survey_preview_blocks(result), "text": f"Preview of survey #{result.notice.id}"}
    text = experiment_text(result, bold=lambda t: f"*{t}*", escape=escape, bullet="•")
    if text is not None:
        return {"text": text}
    if isinstance(result, NoticeStatusReport):
        return {"text": status_text(result)}
    if isinstance(result, Scheduled):
        return {"text": scheduled_text(result)}
    if isinstance(result, Cancelled):
        n = result.notice
        verb = "cancelled" if n.status == "cancelled" else f"already {n.status}; nothing to cancel"
        return {"text": f"Notice #{n.id} {verb}."}
    if isinstance(result, EditResult):
        extra = " Everyone is asked to acknowledge it again." if result.reacknowledge else ""
        return {"text": f":pencil2: Notice #{result.notice.id} {result.summary}.{extra}"}
    if isinstance(result, Retracted):
        return {"text": f":no_entry_sign: Notice #{result.notice.id} retracted: {result.copies} delivered "
                        f"{_plural(result.copies, 'copy', 'copies')} will show \"Retracted: {escape(result.reason)}\"; "
                        f"{result.cancelled} pending {_plural(result.cancelled, 'message', 'messages')} cancelled."}
    if isinstance(result, Paused):
        org = result.organisation
        until = f" until {reader_time(org.paused_until)}" if org.paused_until else " until you resume it"
        return {"text": f":double_vertical_bar: Reminders and nudges for *{escape(org.name)}* are paused{until}. "
                        "Must-know notices are still delivered."}
    if isinstance(result, Resumed):
        return {"text": f":arrow_forward: Reminders and nudges for *{escape(result.organisation.name)}* are back on."}
    if isinstance(result, Handoffs):
        return {"text": handoffs_text(result, bold="*", budget=SLACK_REPLY)}
    if isinstance(result, Progress):
        return {"text": progress_text(result, bold="*", budget=SLACK_REPLY)}
    raise TypeError(f"no Slack rendering for {type(result).__name__}")


def console_link_text(url: str) -> str:
    """Only the person who asked sees it (the reply is ephemeral); the link is a credential."""
    return (f":key: <{escape(url)}|Open the Herald console>\n"
            "The link works once, for 10 minutes, and signs *you* in: do not forward it.")


def scheduled_text(result: Scheduled) -> str:
    if not result.notices:
        return "No notices are scheduled."
    items = [f"• #{n.id} {reader_time(n.scheduled_at)} · {n.importance} · {escape(n.topic)} · *{escape(n.title)}*"  # type: ignore[arg-type]
             f" → `{escape(n.audience)}`" for n in result.notices]
    return SLACK_REPLY.listing(["*Scheduled notices*"], items, ["Cancel one with `/herald cancel <notice-id>`."],
                               more=scheduled_more)


def summary_text(ready: ReportReady, tail: list[str] | None = None) -> str:
    """The summary the `report` reply shows (bot.channels.report_lines, as in Teams), ending with
    where the CSV is (`tail`: what to say instead)."""
    return report_text(ready, bold=lambda t: f"*{t}*", escape=escape, bullet="•", budget=SLACK_REPLY,
                       tail=tail or ["The full CSV report is in your direct messages with Herald."])
