"""Answers: one current answer per member and survey (latest wins), every change kept and audited.

Only the member a survey was delivered to can answer it, until it closes. A click that arrives
twice (double clicks, platform retries) changes nothing the second time.

Anonymous surveys store no member with the answer. The answer row is keyed by a respondent code,
HMAC-SHA256(survey key, "survey id:member id"), where the survey key is random, kept only in the
survey row (sealed with HERALD_SECRET_KEY when set) and erased when the survey closes. While the
survey is open the member's next click computes the same code, so they can change their answer;
from the moment it closes nothing stored links an answer to a member. The answer keeps the
segment breakdowns need (organisation and role); results show no segment under five answers.
Their audit events carry the respondent code, not the member.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, PermissionDenied, UserError
from bot.common.secrets import TokenDecryptError, environment_cipher
from bot.core.compliance.audit import audit_event, record
from bot.core.delivery.notice_rows import complete_sent_notices
from bot.core.notices.revisions import authorise_change
from bot.core.notices.row_views import survey_view
from bot.core.notices.views import NoticeView, format_time, notice_view
from bot.core.surveys.spec import spec_of
from bot.topics import TopicCatalog
from storage import db as storage_db
from storage.db import as_datetime
from storage.models import (
    Delivery,
    DeliveryStatus,
    Member,
    Notice,
    NoticeStatus,
    Staff,
    Survey,
    SurveyAnswer,
    SurveyAnswerChange,
)

MAX_COMMENT = 2000
# The kinds of an answer's audit events (`_event`): of an anonymous survey, Herald shows none of them,
# nor their count or time, outside the trail itself (they would tell how many answered, and when).
# A comment added or changed under the same answer is `survey.commented`, not a changed answer.
ANSWERED, ANSWER_CHANGED, COMMENTED = "survey.answered", "survey.answer_changed", "survey.commented"
ANSWER_EVENTS = (ANSWERED, ANSWER_CHANGED, COMMENTED)
NOT_YOURS = "This survey was not sent to you, so you cannot answer it."


@dataclass(frozen=True)
class AnswerResult:
    notice: Notice
    survey: Survey
    member: Member
    value: int
    comment: str
    recorded: bool  # False: the same answer arrived again and nothing changed
    first: bool  # the member's first answer to this survey
    in_doubt: bool = False  # the member's copy is still in doubt (`sending`): see _recipient

    @property
    def label(self) -> str:
        return spec_of(self.survey).label(self.value)

    def view(self, catalog: TopicCatalog, *, now: datetime) -> NoticeView:
        """The survey message as the member now sees it: their answer marked, still changeable."""
        return notice_view(self.notice, catalog).with_survey(
            survey_view(self.survey, now=now, answered=self.value, comment=self.comment))


def respondent_code(survey: Survey, member_id: int) -> str:
    if not survey.anonymous:
        return f"member:{member_id}"
    try:
        key = environment_cipher().open(survey.respondent_key)
    except TokenDecryptError as exc:
        raise UserError("Herald cannot read this anonymous survey's key (HERALD_SECRET_KEY changed); "
                        "the answer was not recorded.") from exc
    if not key:
        raise UserError("This survey is closed; answers can no longer be changed.")
    return hmac.new(key.encode(), f"{survey.id}:{member_id}".encode(), hashlib.sha256).hexdigest()


# Copies an answer can come from: a copy in doubt (`sending`: posted, the platform's answer lost)
# too, as for an acknowledgement (acks._delivered_to): its buttons only exist on a message that
# reached the member, so the click proves it landed. That message is left as it is until the
# outbox has found it (by what Herald posted) and recorded it: `AnswerResult.in_doubt`.
_ANSWERABLE = [DeliveryStatus.DELIVERED.value, DeliveryStatus.SENDING.value]


async def _recipient(notice_id: int, platform: str, workspace_id: str, user_id: str,
                     ) -> tuple[Survey, Notice, Delivery, bool]:
    """The survey, its notice, the member's (first) copy and whether a copy of theirs is in doubt."""
    survey = await Survey.filter(notice_id=notice_id).select_related("notice").first()
    if survey is None:
        raise NotFound(f"survey #{notice_id} does not exist")
    if platform == "teams":  # Teams ids arrive in either case; they are stored lower-case
        workspace_id, user_id = workspace_id.lower(), user_id.lower()
    copies = await Delivery.filter(
        notice_id=notice_id, platform=platform, status__in=_ANSWERABLE,
        account__workspace_external_id=workspace_id, account__user_id=user_id).select_related("member").order_by("id")
    if not copies:
        raise PermissionDenied(NOT_YOURS)
    delivery, in_doubt = copies[0], any(c.status == DeliveryStatus.SENDING.value for c in copies)
    notice: Notice = survey.notice
    if notice.status == NoticeStatus.RETRACTED.value:
        raise UserError(f"Survey #{notice.id} was withdrawn, so it takes no answers.")
    return survey, notice, delivery, in_doubt


def _ensure_open(survey: Survey, now: datetime) -> None:
    _refuse_if_closed(survey.closed_at, survey.closes_at, now)


def _refuse_if_closed(closed_at: datetime | None, closes_at: datetime | None, now: datetime) -> None:
    closed = closed_at or (closes_at if closes_at and closes_at <= now else None)
    if closed is not None:
        raise UserError(f"This survey closed at {format_time(closed)}; answers can no longer be changed.")


# The survey as the answer's transaction sees it: a close (the CAM, the close date's tick, another
# replica) that commits after the first check must not be followed by the answer. On PostgreSQL
# FOR SHARE makes a close wait for the answers being written (so `survey.closed` counts them) and an
# answer wait for a close being written (and then see it); SQLite writes one transaction at a time.
_STILL_OPEN_SQL = "SELECT closed_at, closes_at FROM survey WHERE id=?"


async def _ensure_still_open(conn: BaseDBAsyncClient, survey_id: int, now: datetime) -> None:
    query = _STILL_OPEN_SQL + (" FOR SHARE" if conn.capabilities.dialect == "postgres" else "")
    [row] = await conn.execute_query_dict(storage_db.placeholders(query), [survey_id])
    _refuse_if_closed(as_datetime(row["closed_at"]), as_datetime(row["closes_at"]), now)


async def answer_survey(notice_id: int, value: int, *, platform: str, workspace_id: str, user_id: str,
                        now: datetime, comment: str | None = None) -> AnswerResult:
    """Record (or change) the member's answer; `comment` (Teams sends the card's text box along)
    replaces their follow-up comment when given."""
    survey, notice, delivery, in_doubt = await _recipient(notice_id, platform, workspace_id, user_id)
    _ensure_open(survey, now)
    if not spec_of(survey).accepts(value):
        raise UserError("That is not one of this survey's answers.")
    return await _record(survey, notice, delivery.member, value=value, comment=_clean(comment, survey),
                         platform=platform, now=now, in_doubt=in_doubt)


async def comment_on_survey(notice_id: int, text: str, *, platform: str, workspace_id: str, user_id: str,
                            now: datetime) -> AnswerResult:
    """The member's answer to the follow-up question (they must have answered the question first)."""
    survey, notice, delivery, in_doubt = await _recipient(notice_id, platform, workspace_id, user_id)
    _ensure_open(survey, now)
    comment = _clean(text, survey)
    if not comment:
        raise UserError("The comment is empty.")
    current = await SurveyAnswer.get_or_none(survey_id=survey.id, respondent=respondent_code(survey, delivery.member.id))
    if current is None:
        raise UserError("Choose an answer first, then add your comment.")
    return await _record(survey, notice, delivery.member, value=current.value, comment=comment, platform=platform,
                         now=now, in_doubt=in_doubt)


async def comment_form(notice_id: int, *, platform: str, workspace_id: str, user_id: str,
                       now: datetime) -> tuple[str, str]:
    """(follow-up question, the member's current comment) for the comment form, after the checks an
    answer gets: the survey was sent to them, is open and asks a follow-up."""
    survey, _, delivery, _ = await _recipient(notice_id, platform, workspace_id, user_id)
    _ensure_open(survey, now)
    if not survey.follow_up:
        raise UserError("This survey has no follow-up question.")
    current = await SurveyAnswer.get_or_none(survey_id=survey.id, respondent=respondent_code(survey, delivery.member.id))
    return survey.follow_up, current.comment if current else ""


def _clean(comment: str | None, survey: Survey) -> str | None:
    if comment is None:
        return None
    text = comment.strip()
    if text and not survey.follow_up:
        raise UserError("This survey has no follow-up question.")
    if len(text) > MAX_COMMENT:
        raise UserError(f"The comment is {len(text)} characters; keep it under {MAX_COMMENT}.")
    return text or None


async def _record(survey: Survey, notice: Notice, member: Member, *, value: int, comment: str | None,
                  platform: str, now: datetime, in_doubt: bool = False) -> AnswerResult:
    respondent = respondent_code(survey, member.id)
    for _ in range(3):  # a concurrent click on another copy can win the race; read it and go again
        current = await SurveyAnswer.get_or_none(survey_id=survey.id, respondent=respondent)
        new_comment = comment if comment is not None else (current.comment if current else "")
        if current is not None and current.value == value and current.comment == new_comment:
            return AnswerResult(notice, survey, member, value, new_comment, recorded=False, first=False,
                                in_doubt=in_doubt)
        try:
            async with in_transaction() as conn:
                await _ensure_still_open(conn, survey.id, now)
                if current is None:
                    await SurveyAnswer.create(
                        survey_id=survey.id, respondent=respondent, member_id=None if survey.anonymous else member.id,
                        organisation_id=member.organisation_id, role=member.role,  # type: ignore[attr-defined]
                        value=value, comment=new_comment, platform=platform, answered_at=now, changed_at=now,
                        using_db=conn)
                elif not await _update_answer(conn, current, value=value, comment=new_comment, platform=platform,
                                              now=now):
                    raise _Retry
                await SurveyAnswerChange.create(survey_id=survey.id, respondent=respondent, value=value,
                                                comment=new_comment, platform=platform, changed_at=now, using_db=conn)
                await record([_event(survey, notice, member, respondent, current, value, new_comment, platform, now)],
                             using_db=conn)
            return AnswerResult(notice, survey, member, value, new_comment, recorded=True, first=current is None,
                                in_doubt=in_doubt)
        except (IntegrityError, _Retry):
            continue
    raise UserError("Your answer could not be saved because it changed at the same moment; please click again.")


class _Retry(Exception):
    """The answer row changed between reading and writing it."""


async def _update_answer(conn: BaseDBAsyncClient, current: SurveyAnswer, *, value: int, comment: str, platform: str,
                         now: datetime) -> bool:
    """Write the member's new answer or comment over `current`, if the row is still as read.
    `changes` counts changed answers only: a comment added or reworded under the same answer
    (in Slack always a second step, after the button) is not one."""
    changes = current.changes + (value != current.value)
    return bool(await SurveyAnswer.filter(
        id=current.id, changes=current.changes, value=current.value, comment=current.comment).using_db(conn).update(
        value=value, comment=comment, platform=platform, changed_at=now, changes=changes))


def _event(survey: Survey, notice: Notice, member: Member, respondent: str, before: SurveyAnswer | None,
           value: int, comment: str, platform: str, now: datetime):  # noqa: ANN202
    kind = ANSWERED if before is None else ANSWER_CHANGED if value != before.value else COMMENTED
    who = {"member_id": None, "actor": "", "respondent": respondent} if survey.anonymous else {
        "member_id": member.id, "actor": member.email}
    return audit_event(kind, now=now, notice_id=notice.id, survey=survey.id, value=value,
                       label=spec_of(survey).label(value), previous=before.value if before else None,
                       comment_chars=len(comment), platform=platform, **who)


# ---- closing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CloseResult:
    notice: Notice
    survey: Survey
    already: bool


async def close_survey(notice_id: int, staff: Staff | None, *, now: datetime, operator: str = "") -> CloseResult:
    """Stop taking answers now (the survey's author or an admin)."""
    survey = await Survey.get_or_none(notice_id=notice_id)
    if survey is None:
        raise NotFound(f"survey #{notice_id} does not exist")
    notice, actor = await authorise_change(notice_id, staff, operator)
    closed = await _close(survey, actor=actor, now=now)
    return CloseResult(notice, await Survey.get(id=survey.id), already=not closed)


async def close_due_surveys(now: datetime) -> int:
    """Close surveys whose close date has passed or whose notice was retracted (every replica may
    run this at once: the conditional update closes each one once)."""
    closed = 0
    due = await Survey.filter(closed_at__isnull=True, closes_at__lte=now)
    retracted = await Survey.filter(closed_at__isnull=True, notice__status=NoticeStatus.RETRACTED.value)
    for survey in {s.id: s for s in [*due, *retracted]}.values():
        closed += await _close(survey, actor="scheduler", now=now)
    return closed


async def _close(survey: Survey, *, actor: str, now: datetime) -> int:
    """Close once: erase the respondent key, flag the delivered messages to lose their buttons and
    cancel the copies not sent yet (a closed survey is nothing to send). A retracted survey's
    messages already show the retraction, without buttons: they are left alone, as updating each
    again would spend the workspace's chat.update budget on the same message."""
    at = min(survey.closes_at, now) if survey.closes_at else now
    notice_id: int = survey.notice_id  # type: ignore[attr-defined]
    async with in_transaction() as conn:
        changed = await Survey.filter(id=survey.id, closed_at__isnull=True).using_db(conn).update(
            closed_at=at, respondent_key="")
        if not changed:
            return 0
        cancelled = await Delivery.filter(
            notice_id=notice_id, status__in=[DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]).using_db(
            conn).update(status=DeliveryStatus.CANCELLED.value, error="the survey closed before it was sent",
                         updated_at=now)
        # the copies in flight too: one sent with buttons is updated once it is delivered, and one
        # that comes back unsent is cancelled (the outbox's _CANCEL_UNWANTED_SQL)
        copies = 0 if await _retracted(conn, notice_id) else await Delivery.filter(
            notice_id=notice_id, status__in=[DeliveryStatus.DELIVERED.value, DeliveryStatus.SENDING.value],
        ).using_db(conn).update(update_pending=True, update_seq=F("update_seq") + 1)
        answers = await SurveyAnswer.filter(survey_id=survey.id).using_db(conn).count()
        await record([audit_event("survey.closed", now=now, actor=actor, notice_id=notice_id, survey=survey.id,
                                  answers=answers, copies=copies, cancelled=cancelled,
                                  respondent_key_erased=survey.anonymous)], using_db=conn)
        await complete_sent_notices(now, [notice_id], using_db=conn)  # its last copies may be the cancelled ones
    return 1


async def _retracted(conn: BaseDBAsyncClient, notice_id: int) -> bool:
    return await Notice.filter(id=notice_id, status=NoticeStatus.RETRACTED.value).using_db(conn).exists()
