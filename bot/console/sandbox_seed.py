"""The sandbox's sample world, written on first start through the same core calls an operator
would use: the directory CSV import (`config/sandbox/directory.csv`), staff roles, one sandbox
account per member, and one must-know notice from the sample CAM so there is something to
acknowledge straight away. A database that already has organisations is left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.channels.sandbox import WORKSPACE
from bot.core.commands.parser import SendCommand
from bot.core.directory.console_access import SignInLink, issue_link_for_email
from bot.core.directory.importer import import_directory
from bot.core.directory.staff import add_staff
from bot.core.notices import sending
from bot.service import Herald
from config.settings import CONFIG_DIR
from storage.models import Member, Organisation, Platform, PlatformAccount, Staff

log = logging.getLogger(__name__)

DIRECTORY = CONFIG_DIR / "sandbox" / "directory.csv"
CAM = "casey.morgan@northwind.example"
STAFF = ((CAM, "cam", "Casey Morgan"), ("jordan.lee@northwind.example", "cam", "Jordan Lee"),
         ("robin.quinn@northwind.example", "compliance", "Robin Quinn"),
         ("alex.admin@northwind.example", "admin", "Alex Admin"))
SAMPLE_BODY = """Firmware 4.2 of the **NW-200 smart lock** can leave the bolt unlocked after a power cut.

- Stop installing NW-200 units with firmware 4.2 today.
- Update installed units to 4.2.1 from the partner portal.
- Tell affected customers; the _customer letter_ is ready for you.

Details and the letter: [recall page](https://partners.northwind.example/recalls/nw-200)"""


@dataclass(frozen=True)
class Seeded:
    created: bool
    notice_id: int | None


async def seed(herald: Herald) -> Seeded:
    """Load the sample world unless the database already has a directory."""
    if await Organisation.exists():
        return Seeded(False, None)
    now = herald.clock.now()
    result = await import_directory(DIRECTORY.read_text(encoding="utf-8"), now=now, actor="sandbox")
    if result.rejected:
        log.error("sandbox directory rows rejected: %s", result.rejected)
    for email, role, name in STAFF:
        await add_staff(email, role, name=name, now=now, actor="sandbox")
    await give_sandbox_accounts()
    author = await Staff.get(email=CAM)
    preview = await sending.create_draft(author, SendCommand(
        importance="must-know", topic="operations", audience="all", title="Recall of NW-200 firmware 4.2",
        body=SAMPLE_BODY), herald.catalog, now=now)
    await sending.send_draft(preview.notice.id, author, herald.catalog, now=now,
                             platform_policy=herald.settings.platform_policy)
    await herald.outbox.drain()  # the sandbox platform delivers in-process: in the inboxes before the link shows
    return Seeded(True, preview.notice.id)


async def give_sandbox_accounts() -> int:
    """An inbox on the sandbox platform for every active member who has none: the sample members,
    and whoever an operator imports into the sandbox (they have no Slack or Teams there). Returns
    how many were added."""
    have = await PlatformAccount.filter(platform=Platform.SANDBOX.value).values_list("member_id", flat=True)
    members = await Member.filter(active=True).exclude(id__in=list(have)).values_list("id", "email")
    await PlatformAccount.bulk_create([
        PlatformAccount(member_id=member_id, platform=Platform.SANDBOX.value, workspace_external_id=WORKSPACE,
                        user_id=email, dm_channel=email) for member_id, email in members])
    return len(members)


async def welcome_link(herald: Herald) -> SignInLink:
    """A sign-in link for the sample CAM, printed at start-up."""
    return await issue_link_for_email(CAM, via="sandbox", now=herald.clock.now(), actor="sandbox")
