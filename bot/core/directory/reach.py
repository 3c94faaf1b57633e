"""Which of a person's chat accounts Herald writes to, one rule for every message.

A member (or a staff member) may have a Slack and a Teams account. Herald writes to one of them:
an account in a workspace Herald was removed from (an inactive `Workspace` row, written by the
uninstall) comes last, whatever the platform, since a message there can only fail; among the
others, the preferred platform's account, else Slack's, then Teams', then the oldest. When every
account is unreachable the best of them is still chosen, so the failure names the real reason.

A Teams account whose member removed Herald (`app_removed_at`, see `app_installs`) comes last
too. Any platform's inactive `Workspace` row counts the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, TypeVar

from bot.core.ports import Channel, Recipient
from storage.models import Platform, Staff, Workspace

PLATFORM_PREFERENCE = (Platform.SLACK.value, Platform.TEAMS.value)


class Reachable(Protocol):
    """What the rule needs of an account: its platform, its workspace (team or tenant) and its id."""

    @property
    def id(self) -> int: ...

    @property
    def platform(self) -> str: ...

    @property
    def workspace_external_id(self) -> str: ...


AccountT = TypeVar("AccountT", bound=Reachable)


async def unreachable_workspaces() -> frozenset[tuple[str, str]]:
    """(platform, workspace id) of every workspace Herald was removed from. A small table: one
    query serves a broadcast to any number of members."""
    rows = await Workspace.filter(active=False).values_list("platform", "external_id")
    return frozenset((platform, external_id) for platform, external_id in rows)


def choose_account(accounts: Sequence[AccountT], *, preferred: str = "",
                   unreachable: Collection[tuple[str, str]] = ()) -> AccountT | None:
    """The account to write to (see the module docstring); None when there is none."""
    if not accounts:
        return None
    rank = {p: i for i, p in enumerate(dict.fromkeys(p for p in (preferred, *PLATFORM_PREFERENCE) if p))}
    return min(accounts, key=lambda a: ((a.platform, a.workspace_external_id) in unreachable
                                        or getattr(a, "app_removed_at", None) is not None,
                                        rank.get(a.platform, len(rank)), a.id))


class _StaffAccount:
    """One of a staff member's chat identities, shaped for `choose_account`."""

    __slots__ = ("id", "platform", "workspace_external_id", "recipient")

    def __init__(self, order: int, platform: str, recipient: Recipient) -> None:
        self.id, self.platform, self.workspace_external_id = order, platform, recipient.workspace_id
        self.recipient = recipient


async def staff_recipient(staff: Staff, channels: dict[str, Channel]) -> tuple[Channel, Recipient] | None:
    """Where to reach a staff member (escalations, hand-offs, notes to a notice's author): the
    same rule as for members, among the platforms Herald is configured for."""
    accounts: list[_StaffAccount] = []
    if staff.slack_user_id and Platform.SLACK.value in channels:
        accounts.append(_StaffAccount(0, Platform.SLACK.value, Recipient(
            workspace_id=staff.slack_team_id, user_id=staff.slack_user_id)))
    if staff.teams_aad_object_id and staff.teams_tenant_id and Platform.TEAMS.value in channels:
        accounts.append(_StaffAccount(1, Platform.TEAMS.value, Recipient(
            workspace_id=staff.teams_tenant_id, user_id=staff.teams_aad_object_id,
            dm_channel=staff.teams_conversation_id, service_url=staff.teams_service_url)))
    chosen = choose_account(accounts, unreachable=await unreachable_workspaces() if len(accounts) > 1 else ())
    return (channels[chosen.platform], chosen.recipient) if chosen is not None else None
