"""`/herald` sub-commands for Slack: each turns a parsed command into core calls and returns the
keyword arguments of the reply (`respond(**reply)`). Errors are raised as `UserError`."""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.slack_blocks import escape, preview_blocks, status_text
from bot.core import notices, revisions
from bot.core.commands import (
    CancelCommand, Command, EditCommand, PauseCommand, ReportCommand, ResumeCommand, RetractCommand,
    ScheduledCommand, SendCommand, StatusCommand,
)
from bot.core.errors import NotFound, PermissionDenied, UserError
from bot.core.pauses import pause_organisation, resume_organisation
from bot.core.permissions import require_viewer
from bot.core.status import notice_status
from bot.core.views import format_time
from bot.service import Herald
from storage.models import Notice, Staff

Reply = dict[str, Any]


class SlackCommands:
    def __init__(self, herald: Herald) -> None:
        self.herald = herald

    @property
    def now(self):  # noqa: ANN201
        return self.herald.clock.now()

    async def run(self, command: Command, staff: Staff | None, *, client: AsyncWebClient, user_id: str) -> Reply:
        if isinstance(command, SendCommand):
            return await self.preview(command, staff)
        if isinstance(command, StatusCommand):
            return {"text": status_text(await self.status(staff, command.notice_id))}
        if isinstance(command, ScheduledCommand):
            return {"text": await self.scheduled(staff)}
        if isinstance(command, CancelCommand):
            notice = await notices.cancel_draft(command.notice_id, staff, now=self.now)
            verb = "cancelled" if notice.status == "cancelled" else f"already {notice.status}; nothing to cancel"
            return {"text": f"Notice #{notice.id} {verb}."}
        if isinstance(command, EditCommand):
            return await self.edit(command, staff)
        if isinstance(command, RetractCommand):
            return await self.retract(command, staff)
        if isinstance(command, ReportCommand):
            return await self.report(command.notice_id, staff, client=client, user_id=user_id)
        if isinstance(command, PauseCommand):
            org = await pause_organisation(staff, command.org_id, until=command.until, reason=command.reason, now=self.now)
            until = f" until {format_time(org.paused_until)}" if org.paused_until else " until you resume it"
            return {"text": f":double_vertical_bar: Reminders and nudges for *{escape(org.name)}* are paused{until}. "
                            "Must-know notices are still delivered."}
        if isinstance(command, ResumeCommand):
            org = await resume_organisation(staff, command.org_id, now=self.now)
            return {"text": f":arrow_forward: Reminders and nudges for *{escape(org.name)}* are back on."}
        raise UserError("that command is not available in Slack")

    async def preview(self, command: SendCommand, staff: Staff | None) -> Reply:
        preview = await notices.create_draft(staff, command, self.herald.catalog, now=self.now)
        return {"blocks": preview_blocks(preview.notice, preview.topic.title, preview.recipients, preview.warnings),
                "text": f"Preview of notice #{preview.notice.id}"}

    async def status(self, staff: Staff | None, notice_id: int | None):  # noqa: ANN201
        require_viewer(staff)
        if notice_id is None:
            latest = await notices.latest_notice_of(staff)  # type: ignore[arg-type]
            if latest is None:
                raise NotFound("you have not sent a notice yet; give a notice id: `/herald status 42`")
            notice_id = latest.id
        return await notice_status(notice_id)

    async def scheduled(self, staff: Staff | None) -> str:
        waiting = await notices.scheduled_notices(staff)
        if not waiting:
            return "No notices are scheduled."
        lines = ["*Scheduled notices*"]
        lines += [f"• #{n.id} {format_time(n.scheduled_at)} · {n.importance} · {escape(n.topic)} · *{escape(n.title)}*"  # type: ignore[arg-type]
                  f" → `{escape(n.audience)}`" for n in waiting]
        lines.append("Cancel one with `/herald cancel <notice-id>`.")
        return "\n".join(lines)

    async def edit(self, command: EditCommand, staff: Staff | None) -> Reply:
        result = await revisions.edit_notice(command.notice_id, staff, self.herald.catalog, now=self.now,
                                             title=command.title, body=command.body, material=command.material)
        self.herald.outbox.wake()
        extra = " Everyone is asked to acknowledge it again." if result.reacknowledge else ""
        return {"text": f":pencil2: Notice #{result.notice.id} is now revision {result.revision.revision}; "
                        f"updating {result.copies_to_update} delivered cop{'y' if result.copies_to_update == 1 else 'ies'}.{extra}"}

    async def retract(self, command: RetractCommand, staff: Staff | None) -> Reply:
        notice, flagged, cancelled = await revisions.retract_notice(command.notice_id, staff, reason=command.reason,
                                                                    now=self.now)
        self.herald.outbox.wake()
        return {"text": f":no_entry_sign: Notice #{notice.id} retracted: {flagged} delivered cop"
                        f"{'y' if flagged == 1 else 'ies'} will show \"Retracted: {escape(command.reason)}\"; "
                        f"{cancelled} pending message{'s' if cancelled != 1 else ''} cancelled."}

    async def report(self, notice_id: int, staff: Staff | None, *, client: AsyncWebClient, user_id: str) -> Reply:
        from bot.core.reports import can_read_notice, notice_summary, report_chunks

        notice = await Notice.get_or_none(id=notice_id)
        if notice is None:
            raise NotFound(f"notice {notice_id} does not exist")
        if staff is None or not can_read_notice(staff, notice):
            raise PermissionDenied("Only compliance, admins and the notice's CAM can pull its report.")
        summary = await notice_summary(notice_id)
        csv_text = "".join([chunk async for chunk in report_chunks(notice_id, "csv", now=self.now, actor=staff.email)])
        dm = (await client.conversations_open(users=user_id))["channel"]["id"]
        await client.files_upload_v2(channel=dm, content=csv_text, filename=f"notice-{notice_id}-report.csv",
                                     title=f"Acknowledgement report, notice #{notice_id}",
                                     initial_comment=f"Acknowledgement report for notice #{notice_id}")
        return {"text": summary_text(notice, summary) + "\nThe full CSV report is in your direct messages with Herald."}


def summary_text(notice: Notice, summary: dict[str, Any]) -> str:
    totals = summary.get("totals", summary)
    rate = totals.get("acknowledgement_rate")
    lines = [f"*Report for notice #{notice.id}: {escape(notice.title)}*",
             "Recipients {recipients} · delivered {delivered} · failed {failed} · acknowledged {acknowledged}".format(
                 **{k: totals.get(k, 0) for k in ("recipients", "delivered", "failed", "acknowledged")})
             + (f" ({rate:.0%})" if isinstance(rate, (int, float)) else "")]
    for org in summary.get("organisations", [])[:20]:
        org_rate = org.get("acknowledgement_rate")
        lines.append(f"• {escape(str(org.get('organisation', '')))}: {org.get('acknowledged', 0)}/{org.get('delivered', 0)}"
                     + (f" ({org_rate:.0%})" if isinstance(org_rate, (int, float)) else ""))
    return "\n".join(lines)
