"""Running a staff member's command, whatever platform it was typed on.

Returns plain result objects; the Slack and Teams handlers render them in their own way. Every
command is authorised here (by the core calls it makes), never in a handler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.common.clock import Clock
from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.common.replies import ReplyBudget
from bot.core.commands.parser import (
    CancelCommand,
    Command,
    ConsoleCommand,
    EditCommand,
    PauseCommand,
    ProgressCommand,
    QuestionsCommand,
    ReportCommand,
    ResumeCommand,
    RetractCommand,
    RolloutCommand,
    ScheduledCommand,
    SendCommand,
    StatusCommand,
    SurveyCloseCommand,
    SurveyCommand,
    SurveyResultsCommand,
    SurveyStagesCommand,
    VariantsCommand,
)
from bot.core.directory.console_access import SignInLink, issue_link
from bot.core.directory.pauses import pause_organisation, resume_organisation
from bot.core.directory.permissions import require_viewer
from bot.core.notices import revisions, sending
from bot.core.notices.rollout import RolloutResult, roll_out
from bot.core.notices.status import NoticeStatusReport, notice_status
from bot.core.surveys.answers import CloseResult, close_survey
from bot.core.surveys.creating import SurveyPreview, create_survey_draft
from bot.topics import TopicCatalog
from storage.models import Notice, Organisation, Question, Staff


@dataclass(frozen=True)
class Scheduled:
    notices: list[Notice]


@dataclass(frozen=True)
class Cancelled:
    notice: Notice


@dataclass(frozen=True)
class Retracted:
    notice: Notice
    copies: int
    cancelled: int
    reason: str


@dataclass(frozen=True)
class ReportReady:
    """The person may read the report; the platform decides how to hand it over."""

    notice: Notice
    summary: dict[str, Any]
    staff: Staff


@dataclass(frozen=True)
class Paused:
    organisation: Organisation


@dataclass(frozen=True)
class Resumed:
    organisation: Organisation


@dataclass(frozen=True)
class Handoffs:
    questions: list[Question]


@dataclass(frozen=True)
class Progress:
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class SurveyResults:
    results: dict[str, Any]  # from bot.core.surveys.results.survey_results (anonymity already applied)


@dataclass(frozen=True)
class SurveyStages:
    stages: list[dict[str, Any]]


@dataclass(frozen=True)
class VariantResults:
    results: dict[str, Any]  # from bot.core.notices.ab_results.variant_results


Result = (sending.Preview | NoticeStatusReport | Scheduled | Cancelled | revisions.EditResult | Retracted
          | ReportReady | Paused | Resumed | Handoffs | Progress | SurveyPreview | SurveyResults | CloseResult
          | SurveyStages | RolloutResult | VariantResults
          | SignInLink)


class StaffCommands:
    def __init__(self, catalog: TopicCatalog, clock: Clock, *, wake_outbox: Callable[[], None],
                 platform: str = "") -> None:
        self.catalog = catalog
        self.clock = clock
        self.wake_outbox = wake_outbox
        self.platform = platform  # where the commands are typed (recorded with console links)

    async def run(self, command: Command, staff: Staff | None) -> Result:  # noqa: PLR0911 - one branch per command
        now = self.clock.now()
        if isinstance(command, SendCommand):
            return await sending.create_draft(staff, command, self.catalog, now=now)
        if isinstance(command, StatusCommand):
            return await self.status(staff, command.notice_id, now=now)
        if isinstance(command, ScheduledCommand):
            return Scheduled(await sending.scheduled_notices(staff))
        if isinstance(command, CancelCommand):
            return Cancelled(await sending.cancel_draft(command.notice_id, staff, now=now))
        if isinstance(command, EditCommand):
            if not command.inline:
                raise UserError(f"give the new text: `edit {command.notice_id} [material] | <title> | <body>`")
            result = await revisions.edit_notice(command.notice_id, staff, self.catalog, now=now, title=command.title,
                                                 body=command.body, material=command.material)
            self.wake_outbox()
            return result
        if isinstance(command, RetractCommand):
            notice, copies, cancelled = await revisions.retract_notice(command.notice_id, staff, reason=command.reason,
                                                                       now=now)
            self.wake_outbox()
            return Retracted(notice, copies, cancelled, command.reason)
        if isinstance(command, ReportCommand):
            return await self.report(command.notice_id, staff)
        if isinstance(command, PauseCommand):
            return Paused(await pause_organisation(staff, command.org_id, until=command.until, reason=command.reason,
                                                   now=now))
        if isinstance(command, ResumeCommand):
            return Resumed(await resume_organisation(staff, command.org_id, now=now))
        if isinstance(command, QuestionsCommand):
            from bot.core.onboarding.assistant import open_handoffs

            return Handoffs(await open_handoffs(staff))
        if isinstance(command, ProgressCommand):
            from bot.core.onboarding.journeys import progress

            return Progress(await progress(staff, command.org_id))
        if isinstance(command, ConsoleCommand):
            return await issue_link(staff, via=self.platform or "chat", now=now)
        return await self.run_experiments(command, staff)

    async def run_experiments(self, command: Command, staff: Staff | None) -> Result:  # noqa: PLR0911
        """Surveys and A/B tests; returns the core's own result objects, rendered per platform."""
        now = self.clock.now()
        if isinstance(command, SurveyCommand):
            return await create_survey_draft(staff, command, self.catalog, now=now)
        if isinstance(command, SurveyResultsCommand):
            from bot.core.surveys.results import survey_results

            return SurveyResults(await survey_results(command.notice_id, staff, answers_listed=0))  # chat shows figures
        if isinstance(command, SurveyCloseCommand):
            closed = await close_survey(command.notice_id, staff, now=now)
            self.wake_outbox()
            return closed
        if isinstance(command, SurveyStagesCommand):
            from bot.core.surveys.stages import survey_stages

            return SurveyStages(await survey_stages(staff))
        if isinstance(command, RolloutCommand):
            rolled = await roll_out(command.notice_id, command.variant, staff, catalog=self.catalog, now=now)
            self.wake_outbox()
            return rolled
        if isinstance(command, VariantsCommand):
            from bot.core.notices.ab_results import variant_results

            return VariantResults(await variant_results(command.notice_id, staff))
        raise UserError("that command is not available here")

    async def status(self, staff: Staff | None, notice_id: int | None, *, now: datetime) -> NoticeStatusReport:
        from bot.core.compliance.reports import can_read_notice

        require_viewer(staff)
        if notice_id is None:
            latest = await sending.latest_notice_of(staff)  # type: ignore[arg-type]
            if latest is None:
                raise NotFound("you have not sent a notice yet; give a notice id, e.g. `status 42`")
            notice_id = latest.id
        notice = await Notice.get_or_none(id=notice_id)
        if notice is None:
            raise NotFound(f"notice {notice_id} does not exist")
        if not await can_read_notice(staff, notice):  # the report's rule: a CAM sees their own notices
            raise PermissionDenied(f"You may not see notice #{notice_id}: it is another CAM's.")
        return await notice_status(notice_id, now=now)

    async def report(self, notice_id: int, staff: Staff | None) -> ReportReady:
        from bot.core.compliance.reports import can_read_notice, notice_summary, report_scope

        notice = await Notice.get_or_none(id=notice_id)
        if notice is None:
            raise NotFound(f"notice {notice_id} does not exist")
        if staff is None or not staff.active or not await can_read_notice(staff, notice):
            raise PermissionDenied("Only compliance, admins and the notice's CAM can pull its report.")
        return ReportReady(notice, await notice_summary(notice_id, await report_scope(staff, notice)), staff)


CONSOLE_HINT = "`console` sends you a sign-in link"


def scheduled_more(count: int) -> str:
    """The last line of a `scheduled` list too long for one message."""
    return f"… and {count} more: the console's Notices page lists them all ({CONSOLE_HINT})"


def handoffs_text(result: Handoffs, *, bold: str, budget: ReplyBudget, escape: Callable[[str], str] | None = None) -> str:
    """The open hand-offs as lines; `bold` is the platform's bold marker (`*` Slack, `**` Teams),
    `budget` what one reply of the platform holds (the oldest questions come first)."""
    esc = escape or _slack_escape
    if not result.questions:
        return "No partner questions are waiting for you."
    items = []
    for q in result.questions:
        member = q.member
        items.append(f"• #{q.id} {esc(member.name or member.email)} ({esc(member.organisation.name)}): "
                     f"\"{esc(q.text[:200])}\"")
    return budget.listing(
        [f"{bold}Questions waiting for your answer{bold}"], items,
        ["Answer from the Reply button on the hand-off message."],
        more=lambda n: f"… and {n} more: the console's Questions page lists every one ({CONSOLE_HINT})")


def progress_text(result: Progress, *, bold: str, budget: ReplyBudget, escape: Callable[[str], str] | None = None) -> str:
    """One line per member; a list longer than one reply holds ends with how to see the rest."""
    esc = escape or _slack_escape
    if not result.rows:
        return "No onboarding progress to show yet."
    items = []
    for row in result.rows:
        state = _progress_state(row)
        items.append(f"• {esc(str(row.get('organisation', '')))} · {esc(str(row.get('member', '')))} "
                     f"({esc(str(row.get('role', '')))}): {state}")
    if len({row.get("org_id") for row in result.rows}) > 1:
        where = "`progress <org-id>` shows one partner's"
    else:
        where = f"the console's Engagement page counts them by journey stage ({CONSOLE_HINT})"
    return budget.listing([f"{bold}Onboarding progress{bold}"], items, more=lambda n: f"… and {n} more members: {where}")


def _progress_state(row: dict) -> str:
    """A member's place in their journey, telling apart those who are not on one or cannot get
    its steps from those who are simply behind."""
    if row.get("completed_at"):
        return "complete"
    if row.get("enrolled") is False:
        return "not enrolled (joined before onboarding journeys started)"
    steps = f"{row.get('done', 0)}/{row.get('total', 0)} steps"
    if row.get("reachable") is False:
        return f"{steps}, waiting: Herald cannot reach them in Slack or Teams"
    return steps


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
