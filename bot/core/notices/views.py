"""A neutral view of a notice message; Slack and Teams renderers both draw from it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.topics import ImportancePolicy, TopicCatalog, parse_importance
from storage.models import Notice, NoticeStatus

ACK_ACTION = "herald_ack"
# Pulse surveys: one button per answer (the action id ends with the answer's value, as Slack wants
# every action id in a block to differ), the follow-up comment, and a notice's tracked link button.
SURVEY_ANSWER_ACTION = "herald_survey_answer"
SURVEY_COMMENT_ACTION = "herald_survey_comment"
LINK_ACTION = "herald_open_link"


@dataclass(frozen=True)
class Acknowledged:
    by: str
    at: datetime


@dataclass(frozen=True)
class SurveyView:
    """The survey part of a survey notice's message: the question and its one-click answers."""

    question: str
    choices: tuple[tuple[int, str], ...]  # (stored value, button label)
    scale: tuple[int, int] | None = None
    follow_up: str = ""
    anonymous: bool = False
    closes_at: datetime | None = None
    closed_at: datetime | None = None  # set once the survey no longer takes answers
    answered: int | None = None  # the member's current answer (inline replies to their click only)
    comment: str = ""

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def label(self, value: int | None) -> str:
        return dict(self.choices).get(value, "") if value is not None else ""


@dataclass(frozen=True)
class NoticeView:
    notice_id: int
    topic_key: str
    topic_title: str
    policy: ImportancePolicy
    title: str
    body: str
    link: str
    deadline: datetime | None
    revision: int = 1
    sent_at: datetime | None = None
    acknowledged: Acknowledged | None = None
    retracted_reason: str | None = None
    reminder_number: int = 0  # > 0: this message is the n-th reminder about the notice
    original_ref: tuple[str, str] | None = None  # (channel, message id) of the original, for reminders
    variant: str = ""  # A/B test: the variant this message shows ("" = no variants)
    tracked_link: str = ""  # A/B test: the link through Herald, which counts the press (Teams)
    survey: SurveyView | None = None  # a pulse survey's question and answer buttons

    @property
    def shows_ack_button(self) -> bool:
        return self.policy.needs_ack and self.acknowledged is None and self.retracted_reason is None

    @property
    def asks_again(self) -> bool:
        """A reminder still asking for the acknowledgement. Once the member acknowledged, the
        reminder's copy is updated to read like the notice ("Acknowledged by ..."): it no longer
        says "Reminder" or "You have not acknowledged"."""
        return self.reminder_number > 0 and self.acknowledged is None

    def with_ack(self, by: str, at: datetime) -> "NoticeView":
        return replace(self, acknowledged=Acknowledged(by, at))

    def as_reminder(self, number: int, original_ref: tuple[str, str] | None) -> "NoticeView":
        return replace(self, reminder_number=number, original_ref=original_ref)

    def with_variant(self, label: str, title: str, body: str, tracked_link: str = "") -> "NoticeView":
        return replace(self, variant=label, title=title, body=body, tracked_link=tracked_link if self.link else "")

    def with_survey(self, survey: SurveyView) -> "NoticeView":
        return replace(self, survey=survey)


def notice_view(notice: Notice, catalog: TopicCatalog) -> NoticeView:
    topic = catalog.topics.get(notice.topic)
    retracted = notice.status == NoticeStatus.RETRACTED.value
    return NoticeView(
        notice_id=notice.id, topic_key=notice.topic,
        topic_title=topic.title if topic else notice.topic,
        policy=parse_importance(notice.importance), title=notice.title, body=notice.body,
        link=notice.link, deadline=notice.deadline, revision=notice.revision, sent_at=notice.sent_at,
        retracted_reason=(notice.retract_reason or "no reason given") if retracted else None,
    )


def format_time(moment: datetime) -> str:
    """A time as Herald writes it in text: UTC, to the minute ("2026-01-05 09:00 UTC"). Reports,
    logs and errors keep it so; in chat each channel draws it in the reader's zone (`local_stamps`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_STAMP = re.compile(r"\b(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}) UTC\b")


def local_stamps(text: str, reader_time: Callable[[datetime], str]) -> str:
    """`text` with each `format_time` stamp drawn by a channel's `reader_time` (the reader's own
    zone). Text the core writes for staff (an escalation, a note about a notice that failed) carries
    its times as stamps; the channel that renders it for chat shows them this way."""
    def draw(found: re.Match[str]) -> str:
        year, month, day, hour, minute = (int(part) for part in found.groups())
        return reader_time(datetime(year, month, day, hour, minute, tzinfo=UTC))
    return _STAMP.sub(draw, text)
