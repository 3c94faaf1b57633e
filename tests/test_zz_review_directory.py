"""Review of the directory and identity: how members get into Herald and how audiences resolve.

Each test states the behaviour a CAM, a compliance officer or an operator expects and fails on the
current code for the reason in its docstring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.directory.audiences import count_recipients, parse_audience
from bot.core.directory.importer import import_directory
from bot.core.directory.workspaces import deactivate_workspace
from storage.models import Delivery, Member, Organisation, PlatformAccount
from tests.support import SAMPLE_DIRECTORY, TEAM, Rig, directory_csv

MONDAY_9_UTC = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # 10:00 in Berlin

# The sample directory without Anna (a partial export, or the day she was between contracts).
WITHOUT_ANNA = "\n".join(line for line in SAMPLE_DIRECTORY.splitlines() if "anna@" not in line) + "\n"


async def _reminders(notice_id: int, email: str) -> list[Delivery]:
    return await Delivery.filter(notice_id=notice_id, member__email=email, kind="reminder").order_by("sequence")


# --------------------------------------------------------------------------- Unicode


async def test_an_attribute_written_in_decomposed_unicode_matches_the_same_word_typed_composed(db: str) -> None:
    """A directory exported on a Mac (or pasted from a PDF) often carries decomposed accents (NFD:
    'e' + U+0301), while Slack and Teams send what a CAM types composed (NFC). The importer lower-cases
    organisation attributes but does not normalise them (importer._validate_row), and the audience
    compares them as stored (audiences.audience_filter), so an accented value typed by a CAM can
    reach nobody: here `industry:sécurité` previews 0 recipients although the partner's industry reads
    exactly that. The two spellings are the same text (Unicode canonical equivalence)."""
    import unicodedata

    from bot.topics import load_catalog

    nfd = unicodedata.normalize("NFD", "Sécurité")
    row = (f"lyon,Serrures de Lyon,gold,emea,fr,{nfd},large,distributor,cam@vendor.example,"
           "zoe@serrures.example,Zoé Martin,sales,Europe/Paris,fr,T1,UZOE,,")
    assert (await import_directory(directory_csv([row]), now=MONDAY_9_UTC)).rejected == []
    catalog = load_catalog()
    typed = unicodedata.normalize("NFC", "industry:sécurité")

    count = await count_recipients(parse_audience(typed, roles=catalog.roles), catalog.get("announcements"))

    assert count == 1, f"{typed!r} previews {count} recipients; the partner's industry is {nfd!r} (NFD)"
