"""A neutral view of a notice message; Slack and Teams renderers both draw from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from bot.topics import ImportancePolicy, TopicCatalog, parse_importance
from storage.models import Notice, NoticeStatus

ACK_ACTION = "herald_ack"


@dataclass(frozen=True)
class Acknowledged:
    by: str
    at: datetime


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

    @property
    def shows_ack_button(self) -> bool:
        return self.policy.needs_ack and self.acknowledged is None and self.retracted_reason is None

    def with_ack(self, by: str, at: datetime) -> "NoticeView":
        return replace(self, acknowledged=Acknowledged(by, at))

    def as_reminder(self, number: int, original_ref: tuple[str, str] | None) -> "NoticeView":
        return replace(self, reminder_number=number, original_ref=original_ref)


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
    return moment.strftime("%Y-%m-%d %H:%M UTC")
