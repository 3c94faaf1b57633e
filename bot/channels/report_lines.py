"""The reply to `report <id>` as text, shared by the Slack and Teams renderers.

The platforms differ in markup, in how user text is escaped, in how a list item starts and in
what one message holds, so those are parameters; what the reply says is decided once, here: the
totals with the acknowledgement rate, then one line per partner, the ones that need the CAM's
attention first (nothing delivered, the lowest rate, the most failures), at most
MAX_ORGANISATIONS_NAMED of them and a last line saying how many more the CSV lists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bot.common.replies import ReplyBudget
from bot.core.commands.runner import ReportReady
from bot.core.compliance.reports import scope_line
from bot.topics.importance import Importance

MAX_ORGANISATIONS_NAMED = 20  # partners named in chat; the CSV lists them all

# counts shown on a partner's line when there are any, besides delivered and acknowledged
_EXTRA_COUNTS = (("failed", "failed"), ("pending", "pending"), ("held", "held back"),
                 ("digest", "in the digest"), ("cancelled", "cancelled"))


def report_text(ready: ReportReady, *, bold: Callable[[str], str], escape: Callable[[str], str], bullet: str,
                budget: ReplyBudget, tail: Sequence[str]) -> str:
    """The whole reply: `tail` (where the CSV is) always ends it, whatever is left out to fit."""
    acknowledging = ready.notice.importance == Importance.MUST.value
    organisations = sorted(ready.summary.get("organisations", []), key=lambda o: _attention(o, acknowledging))
    items = [f"{bullet} {organisation_line(org, acknowledging=acknowledging, escape=escape)}" for org in organisations]
    return budget.listing(_head(ready, bold=bold, escape=escape, acknowledging=acknowledging), items, tail,
                          more=lambda n: f"… and {n} more organisations (see the CSV)", at_most=MAX_ORGANISATIONS_NAMED)


def _head(ready: ReportReady, *, bold: Callable[[str], str], escape: Callable[[str], str],
          acknowledging: bool) -> list[str]:
    notice, summary = ready.notice, ready.summary
    totals = f"Recipients {summary.get('recipients', 0)} · delivered {summary.get('delivered', 0)} · " \
             f"failed {summary.get('failed', 0)}"
    totals += "".join(f" · {label} {summary[key]}" for key, label in _EXTRA_COUNTS[1:] if summary.get(key))
    if acknowledging:
        totals += f" · acknowledged {summary.get('acknowledged', 0)}{_percent(summary.get('rate'))}"
    lines = [bold(f"Report for notice #{notice.id}: {escape(notice.title)}"), totals]
    if "scope" in summary:  # a CAM reading a colleague's notice escalated for their partners
        line = scope_line(summary["scope"])
        lines.insert(1, escape(line[:1].upper() + line[1:]) + ".")
    unreached = sum(1 for org in ready.summary.get("organisations", []) if "unreached" in org)
    if unreached:
        lines.append(f"Matched partners nobody received it at: {bold(str(unreached))}")
    if ready.summary.get("organisations"):
        lines.append("Per partner, acknowledged of delivered, least acknowledged first:" if acknowledging
                     else "Per partner, delivered of recipients, fewest delivered first:")
    return lines


def organisation_line(org: dict[str, Any], *, acknowledging: bool, escape: Callable[[str], str]) -> str:
    """One partner: acknowledged/delivered (rate) for a must-know notice, else delivered/recipients,
    then what did not arrive. A partner nobody received it at says why; one where nothing was
    delivered says so rather than 0/0."""
    name = escape(str(org.get("organisation") or org.get("organisation_id") or ""))
    if not org.get("recipients"):
        return f"{name}: {escape(str(org.get('note') or 'no recipient'))}"
    if not org.get("delivered"):
        counts = "none delivered"
    elif acknowledging:
        counts = f"{org.get('acknowledged', 0)}/{org['delivered']}{_percent(org.get('rate'))}"
    else:
        counts = f"{org['delivered']}/{org['recipients']}"
    extra = "".join(f" · {org[key]} {label}" for key, label in _EXTRA_COUNTS if org.get(key))
    paused = " · reminders paused" if "reminders_paused" in org else ""
    return f"{name}: {counts}{extra}{paused}"


def _attention(org: dict[str, Any], acknowledging: bool) -> tuple[float, int, str]:
    """Sort key, most in need of attention first: the share acknowledged (must-know) or delivered,
    a partner with nothing delivered or nobody to deliver to lowest; then the most failures."""
    delivered, recipients = org.get("delivered", 0), org.get("recipients", 0)
    if acknowledging:
        share = org.get("acknowledged", 0) / delivered if delivered else -1.0
    else:
        share = delivered / recipients if recipients and delivered else -1.0
    return share, -org.get("failed", 0), str(org.get("organisation") or "")


def _percent(rate: Any) -> str:
    return f" ({rate:.0%})" if isinstance(rate, (int, float)) else ""
