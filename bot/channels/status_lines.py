"""A notice's status as lines of text, shared by the Slack and Teams renderers.

The platforms differ only in markup (``*bold*`` vs ``**bold**``), in how user text is escaped and
in how a list item starts, so those are parameters; what the lines say is decided once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.core.notices.status import NoticeStatusReport
from bot.core.notices.views import format_time
from bot.topics.importance import Importance

MAX_PAUSED_NAMED = 20  # partners named in chat; `herald status <id> --json` names them all


def status_lines(report: NoticeStatusReport, *, bold: Callable[[str], str], escape: Callable[[str], str],
                 bullet: str, when: Callable[[datetime], str] = format_time) -> list[str]:
    """`when` draws a time (a channel's reader_time where its text can show the reader's zone)."""
    n = report.notice
    lines = [
        f"{bold(f'Notice #{n.id}: {escape(n.title)}')} ({n.importance}, {escape(n.topic)}, {n.status})",
        f"Recipients: {bold(str(report.recipients))} · Delivered: {bold(str(report.delivered))} · "
        f"Failed: {bold(str(report.failed))} · Pending: {bold(str(report.pending))}",
    ]
    if n.scheduled_at and n.status == "scheduled":
        lines.append(f"Scheduled for {when(n.scheduled_at)}")
    if n.retract_reason:
        lines.append(f"Retracted: {escape(n.retract_reason)}")
    if n.failure_reason:
        lines.append(f"Not sent: {escape(n.failure_reason)}")
    if n.importance == Importance.MUST.value:
        revision = f" (revision {n.ack_revision})" if n.ack_revision > 1 else ""
        lines.append(f"Acknowledged{revision}: {bold(str(report.acknowledged))} of {report.delivered} delivered"
                     f" · reminders sent: {report.reminders_sent} · escalations: {report.escalations}")
    lines += escalation_lines(report, bold=bold, escape=escape, bullet=bullet)
    if report.paused_organisations:
        paused = report.paused_organisations
        named = ", ".join(escape(o) for o in paused[:MAX_PAUSED_NAMED])
        more = f" and {len(paused) - MAX_PAUSED_NAMED} more" if len(paused) > MAX_PAUSED_NAMED else ""
        lines.append(f"Reminders paused for: {named}{more}")
    if report.survey_answers is not None:
        lines.append(f"Answered: {bold(str(report.survey_answers))} of {report.delivered} delivered "
                     f"(`survey results {n.id}`)")
    if report.variants:
        lines.append("Delivered by variant: " + " · ".join(f"{v} {bold(str(n))}" for v, n in sorted(report.variants.items())))
    if report.held:
        lines.append(f"Held back for the A/B rollout: {bold(str(report.held))} (`rollout {n.id} <variant>`)")
    if report.digest:
        lines.append(f"Waiting for the digest: {bold(str(report.digest))}")
    lines += [f"{bullet} {count} × {escape(reason)}" for reason, count in report.failure_reasons]
    return lines


def escalation_lines(report: NoticeStatusReport, *, bold: Callable[[str], str], escape: Callable[[str], str],
                     bullet: str, times: str = "×") -> list[str]:
    """The escalations that did not reach the partner's CAM, with why: those that told nobody, and
    those that went to the notice's author instead (chat's status, and `herald status`'s text)."""
    lines = []
    if report.escalation_failures:
        failed = sum(count for _, count in report.escalation_failures)
        lines.append(f"Escalations not sent, so nobody was told: {bold(str(failed))}")
        lines += [f"{bullet} {count} {times} {escape(reason)}" for reason, count in report.escalation_failures]
    if report.escalation_fallbacks:
        told = sum(count for _, count in report.escalation_fallbacks)
        lines.append(f"Escalations the partner's CAM could not receive, told the notice's author instead: {bold(str(told))}")
        lines += [f"{bullet} {count} {times} {escape(reason)}" for reason, count in report.escalation_fallbacks]
    return lines
