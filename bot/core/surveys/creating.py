"""Creating surveys: a CAM's draft (previewed, then sent with the notice's Send) and the standing
surveys journey steps send to each member who reaches them.

A survey is a need-to-know notice with a `Survey` row: it goes out through the same outbox rows as
any notice (crash-safe, paced, held for quiet hours, the topic's opt-outs, audited), and its id is
the notice's id. Need-to-know only: a nice-to-know notice waits in a digest without buttons, and
a must-know one would demand an acknowledgement as well as an answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from bot.common.errors import FieldError, UserError
from bot.common.secrets import environment_cipher
from bot.core.commands.parser import SurveyCommand, parse_close_date
from bot.core.compliance.audit import PendingEvent, audit_event, record
from bot.core.compliance.crosscheck import text_digest
from bot.core.directory.audiences import (
    count_recipients,
    parse_audience,
    unmatched_value_warnings,
)
from bot.core.directory.permissions import require_sender
from bot.core.notices.sending import _target_accounts
from bot.core.surveys.spec import SurveySpec, build_spec
from bot.topics import Topic, TopicCatalog, parse_importance
from bot.topics.importance import Importance
from storage.models import (
    Delivery,
    DeliveryStatus,
    Notice,
    NoticeStatus,
    Staff,
    Survey,
)

JOURNEY_TOPIC = "onboarding"  # the topic journey surveys are filed under (shown on the message)


@dataclass(frozen=True)
class SurveyPreview:
    notice: Notice
    survey: Survey
    spec: SurveySpec
    topic: Topic
    recipients: int
    warnings: list[str]


def new_respondent_key(anonymous: bool) -> str:
    """An anonymous survey's key for respondent codes, sealed with HERALD_SECRET_KEY when set."""
    return environment_cipher().seal(secrets.token_hex(32)) if anonymous else ""


def _survey_fields(spec: SurveySpec) -> dict:
    return dict(question=spec.question, kind=spec.kind, options=list(spec.options),
                scale_min=spec.scale[0] if spec.scale else None, scale_max=spec.scale[1] if spec.scale else None,
                follow_up=spec.follow_up, anonymous=spec.anonymous, respondent_key=new_respondent_key(spec.anonymous))


async def create_survey_draft(author: Staff | None, command: SurveyCommand, catalog: TopicCatalog, *,
                              now: datetime, operator: str = "") -> SurveyPreview:
    """Validate, resolve the audience and store a draft survey notice to send or cancel."""
    if not operator:
        author = require_sender(author)
    if parse_importance(command.importance).level is not Importance.NEED:
        raise UserError("surveys go out as need-to-know notices (a direct message, held for quiet hours): "
                        "leave the importance out or write need-to-know")
    topic = catalog.get(command.topic)
    audience = parse_audience(command.audience, roles=catalog.roles)
    spec = build_spec(command.question, command.answers, follow_up=command.follow_up, anonymous=command.anonymous)
    if command.scheduled_at is not None and command.scheduled_at <= now:
        raise UserError("the send time is in the past")
    if command.closes_at is not None and command.closes_at <= (command.scheduled_at or now):
        raise FieldError("closes", "the close date is in the past" if command.scheduled_at is None
                         else "the close date is before the send time")
    recipients = await count_recipients(audience, topic, parse_importance(Importance.NEED.value))
    warnings = await unmatched_value_warnings(audience)
    actor = author.email if author is not None else f"operator:{operator}"
    async with in_transaction() as conn:
        notice = await Notice.create(
            topic=topic.key, importance=Importance.NEED.value, title=spec.question, body=spec.question,
            audience=audience.describe(), author=author, status=NoticeStatus.DRAFT.value,
            recipient_count=recipients, scheduled_at=command.scheduled_at, created_at=now, using_db=conn)
        survey = await Survey.create(notice=notice, closes_at=command.closes_at, created_at=now,
                                     **_survey_fields(spec), using_db=conn)
        await record([audit_event("notice.created", now=now, actor=actor, notice_id=notice.id, topic=topic.key,
                                  importance=notice.importance, audience=notice.audience,
                                  deadline=notice.deadline, title=notice.title,
                                  recipients_previewed=recipients, survey=survey.id, answers=spec.describe_answers(),
                                  follow_up=spec.follow_up or None, anonymous=spec.anonymous,
                                  closes_at=command.closes_at,
                                  text_sha256=text_digest(notice.title, notice.body, notice.link))], using_db=conn)
    return SurveyPreview(notice, survey, spec, topic, recipients, warnings)


def survey_from_form(values: dict[str, str]) -> SurveyCommand:
    """The survey form (Slack modal, Teams card) as a command: `kind` is `scale:1-5`, `scale:0-10`
    or `options` (then `options` holds one answer per line); `anonymous` is "true"/"anonymous".
    A close date that is not one is a FieldError on `closes`, so the form shows it there."""
    kind = (values.get("kind") or "").strip()
    answers = tuple(line for line in (values.get("options") or "").splitlines() if line.strip()) \
        if kind == "options" else (kind,)
    closes = (values.get("closes") or "").strip()
    try:
        closes_at = parse_close_date(closes) if closes else None
    except UserError as exc:
        raise FieldError("closes", str(exc)) from None
    return SurveyCommand(topic=(values.get("topic") or "").strip(), audience=(values.get("audience") or "").strip(),
                         question=values.get("question") or "", answers=answers,
                         follow_up=values.get("follow_up") or "",
                         anonymous=(values.get("anonymous") or "").strip().lower() in ("true", "anonymous"),
                         closes_at=closes_at)


# ---- journey surveys ---------------------------------------------------------------------------

def journey_survey_key(step_key: str, spec: SurveySpec) -> str:
    """One standing survey per journey step and definition: a reworded question starts afresh."""
    return f"journey:{step_key}:{spec.digest()}"


async def journey_survey(step_key: str, spec: SurveySpec, *, now: datetime) -> Survey:
    """The standing survey of a journey step, created the first time a member reaches the step."""
    key = journey_survey_key(step_key, spec)
    found = await Survey.get_or_none(key=key)
    if found is not None:
        return found
    try:
        async with in_transaction() as conn:
            notice = await Notice.create(
                topic=JOURNEY_TOPIC, importance=Importance.NEED.value, title=spec.question, body=spec.question,
                audience=f"journey step {step_key}", status=NoticeStatus.SENDING.value, sent_at=now,
                created_at=now, using_db=conn)
            survey = await Survey.create(notice=notice, key=key, created_at=now, **_survey_fields(spec), using_db=conn)
            await record([audit_event("notice.created", now=now, actor="journeys", notice_id=notice.id,
                                      topic=JOURNEY_TOPIC, importance=notice.importance, title=notice.title,
                                      audience=notice.audience, deadline=notice.deadline,
                                      survey=survey.id, journey_step=step_key, answers=spec.describe_answers(),
                                      anonymous=spec.anonymous,
                                      text_sha256=text_digest(notice.title, notice.body, notice.link))],
                         using_db=conn)
        return survey
    except IntegrityError:  # another replica created it first
        return await Survey.get(key=key)


async def enqueue_journey_survey(survey: Survey, member_id: int, *, now: datetime,
                                 using_db: object) -> list[PendingEvent]:
    """Write the member's outbox row for a journey step's survey (once: the delivery's unique key).
    The journey planner calls this in the transaction that records the member reaching the step."""
    if survey.closed_at is not None:
        return []
    organisations: dict[int, int] = {}
    accounts = (await _target_accounts([member_id], every_platform=False, organisations=organisations)).get(member_id, [])
    if not accounts:
        return []
    notice_id = survey.notice_id  # type: ignore[attr-defined]
    if await Delivery.filter(notice_id=notice_id, member_id=member_id).using_db(using_db).exists():
        return []
    account = accounts[0]
    await Delivery.create(notice_id=notice_id, member_id=member_id, organisation_id=organisations.get(member_id),
                          platform=account.platform, account_id=account.id,
                          workspace_external_id=account.workspace_external_id, status=DeliveryStatus.PENDING.value,
                          next_attempt_at=now, created_at=now, using_db=using_db)
    await Notice.filter(id=notice_id).using_db(using_db).update(recipient_count=F("recipient_count") + 1)
    return [audit_event("survey.queued", now=now, notice_id=notice_id, member_id=member_id, survey=survey.id,
                        platform=account.platform)]
