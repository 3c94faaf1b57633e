"""A directory big enough for anonymity thresholds and A/B balance: three partners with 6, 4 and 2
reachable Slack members, plus helpers to send surveys and variant notices and click their buttons."""

from __future__ import annotations

from dataclasses import dataclass

from bot.common.clock import ManualClock
from bot.core.commands.parser import SendCommand, SurveyCommand, parse_command
from bot.core.notices import sending
from bot.core.surveys.answers import AnswerResult, answer_survey
from bot.core.surveys.creating import create_survey_draft
from bot.service import Herald
from config.settings import load_settings
from tests.fakes.slack_api import FakeSlackAPI
from tests.support import TEAM, TOKEN, directory_csv, seed_directory

ORGS = (("acme", "Acme Locks", "gold", "emea", "de", 6), ("bolt", "Bolt Supply", "silver", "amer", "us", 4),
        ("keys", "Keys & Co", "gold", "apac", "au", 2))
ROLES = ("sales", "support", "technical")


def members() -> list[tuple[str, str, str]]:
    """(org id, e-mail, Slack user id) of every member, in directory order."""
    out = []
    for org, _, _, _, _, count in ORGS:
        for n in range(1, count + 1):
            out.append((org, f"m{n}@{org}.example", f"U{org.upper()}{n}"))
    return out


def big_directory() -> str:
    rows = []
    by_org = {o[0]: o for o in ORGS}
    for index, (org, email, user) in enumerate(members()):
        _, name, tier, region, country, _ = by_org[org]
        role = ROLES[index % len(ROLES)]
        rows.append(f"{org},{name},{tier},{region},{country},security,large,reseller,cam@vendor.example,{email},"
                    f"Member {user},{role},UTC,en,{TEAM},{user},,")
    return directory_csv(rows)


@dataclass
class SurveyRig:
    fake: FakeSlackAPI
    herald: Herald
    clock: ManualClock

    async def survey(self, text: str) -> int:
        """Create and send `survey <text>` as an operator; returns the survey (notice) id."""
        command = parse_command("survey " + text)
        assert isinstance(command, SurveyCommand), command
        preview = await create_survey_draft(None, command, self.herald.catalog, now=self.clock.now(), operator="test")
        await sending.send_draft(preview.notice.id, None, self.herald.catalog, now=self.clock.now(), operator="test")
        return preview.notice.id

    async def notice(self, text: str) -> int:
        """Create and send `send <text>` (variants and share allowed) as an operator."""
        command = parse_command("send " + text)
        assert isinstance(command, SendCommand), command
        preview = await sending.create_draft(None, command, self.herald.catalog, now=self.clock.now(), operator="test")
        await sending.send_draft(preview.notice.id, None, self.herald.catalog, now=self.clock.now(), operator="test")
        return preview.notice.id

    async def answer(self, notice_id: int, user: str, value: int, comment: str | None = None) -> AnswerResult:
        return await answer_survey(notice_id, value, platform="slack", workspace_id=TEAM, user_id=user,
                                   now=self.clock.now(), comment=comment)


async def start_survey_rig(db_url: str, **settings: object) -> SurveyRig:
    fake = FakeSlackAPI()
    await fake.start()
    fake.add_workspace(TEAM, TOKEN)
    for _, _, user in members():
        fake.add_user(TEAM, user)
    fake.add_user(TEAM, "UCAM1")
    clock = ManualClock()
    herald = Herald(load_settings(database_url=db_url, slack_signing_secret="s", slack_api_url=fake.url,
                                  **settings), clock=clock)
    await seed_directory(clock, csv_text=big_directory())
    return SurveyRig(fake, herald, clock)


async def stop_survey_rig(rig: SurveyRig) -> None:
    await rig.herald.close()
    await rig.fake.stop()
