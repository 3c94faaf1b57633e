"""Partner directory import: one CSV row per (organisation, member), upserted in bulk.

The cells are separated by commas, or by semicolons or tabs as Excel saves CSV in some locales
(told from the header, see `detect_delimiter`).

The file is the source of truth for the organisations and members it names:

* organisations are matched by ``org_id`` (``Organisation.external_id``) in any case, as audiences
  match it (the stored spelling is kept; a file spelling one id two ways is refused on the later
  line), members by (organisation, e-mail), platform accounts by (platform, workspace id, user id);
* empty Slack/Teams cells leave a member's existing accounts alone (they may have been linked
  by other means); changed ids update the member's existing account of that platform;
* good rows are imported even when other rows are rejected; every rejection names its CSV line
  (the header is line 1) and why;
* everything is written in one transaction together with one ``directory.imported`` audit event
  (and ``member.deactivated`` / ``member.reactivated`` for each member left out or named again,
  ``delivery.cancelled`` for each copy cancelled so), and re-importing the same file changes nothing.

Work is done in a handful of bulk queries (load what the file touches, compute a plan, apply it)
so that tens of thousands of rows import in seconds. A dry run computes the same plan and stops
before writing, so its counts are exactly those of a real import.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from email_validator import EmailNotValidError, validate_email
from tortoise.transactions import in_transaction

from bot.common.errors import UserError
from bot.common.progress import Progress, no_progress
from bot.core.compliance.audit import PendingEvent, audit_event, record
from bot.core.directory.handoff_owners import follow_organisation_cams
from bot.core.directory.permissions import SENDERS
from bot.core.insights.recount import mark_for_recount
from bot.core.notices.rejoining import REMOVED_FROM_DIRECTORY, restorable_copies, restore_copies, resume_reminders
from storage import db as storage_db
from storage.models import Delivery, DeliveryStatus, Member, Organisation, Platform, PlatformAccount, Staff

COLUMNS: tuple[str, ...] = (
    "org_id",
    "org_name",
    "tier",
    "region",
    "country",
    "industry",
    "size",
    "partner_type",
    "cam_email",
    "member_email",
    "member_name",
    "role",
    "timezone",
    "locale",
    "slack_team_id",
    "slack_user_id",
    "teams_tenant_id",
    "teams_aad_object_id",
)
REQUIRED: tuple[str, ...] = ("org_id", "org_name", "member_email", "role")

# Organisation attributes the audience matcher compares lower-case.
_LOWERED_ORG_COLUMNS = ("tier", "region", "country", "industry", "size", "partner_type")
# Every per-organisation column, CSV name -> Organisation field.
_ORG_COLUMNS: dict[str, str] = {
    "org_name": "name",
    **{c: c for c in _LOWERED_ORG_COLUMNS},
    "cam_email": "cam_email",
}
_MEMBER_FIELDS = ("email", "name", "role", "timezone", "timezone_from_directory", "locale", "active")
_MEMBER_COLUMNS = ("id", "organisation_id", *_MEMBER_FIELDS, "timezone_chosen")
_ACCOUNT_COLUMNS = (
    "id",
    "member_id",
    "platform",
    "workspace_external_id",
    "user_id",
    "dm_channel",
    "service_url",
)

# Column -> (model, field) whose max_length bounds the cell (PostgreSQL would refuse longer).
_LENGTH_SOURCES: dict[str, tuple[type, str]] = {
    "org_id": (Organisation, "external_id"),
    **{column: (Organisation, name) for column, name in _ORG_COLUMNS.items()},
    "member_email": (Member, "email"),
    "member_name": (Member, "name"),
    "role": (Member, "role"),
    "timezone": (Member, "timezone"),
    "locale": (Member, "locale"),
    "slack_team_id": (PlatformAccount, "workspace_external_id"),
    "slack_user_id": (PlatformAccount, "user_id"),
    "teams_tenant_id": (PlatformAccount, "workspace_external_id"),
    "teams_aad_object_id": (PlatformAccount, "user_id"),
}

_CHUNK = 500  # ids per IN (...) query / rows per bulk UPDATE
# a deactivated member's copies in these states are cancelled (a queued copy, a held-back A/B share)
_UNSENT = [DeliveryStatus.PENDING.value, DeliveryStatus.HELD.value]


@dataclass
class RowError:
    line: int
    reason: str


@dataclass
class ImportResult:
    created: int
    updated: int
    unchanged: int
    deactivated: int
    rejected: list[RowError]
    dry_run: bool
    organisations_created: int = 0
    organisations_updated: int = 0
    restored: int = 0  # copies put back in the outbox for members the file brought back
    cancelled: int = 0  # copies still to be sent to the members it deactivated, cancelled
    ignored_columns: list[str] = field(default_factory=list)  # the file's columns that are not the directory's
    # cam_email -> the file's organisations naming it, for addresses that are no active CAM or admin
    unknown_cams: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DirectoryRow:
    """One validated, normalised CSV row."""

    line: int
    org_id: str
    org_name: str
    tier: str
    region: str
    country: str
    industry: str
    size: str
    partner_type: str
    cam_email: str
    member_email: str
    member_name: str
    role: str
    timezone: str
    locale: str
    slack_team_id: str
    slack_user_id: str
    teams_tenant_id: str
    teams_aad_object_id: str

    @property
    def org_key(self) -> str:
        return org_key(self.org_id)

    @property
    def key(self) -> tuple[str, str]:
        return (self.org_key, self.member_email)

    def organisation_fields(self) -> dict[str, str]:
        """The Organisation field values this row states."""
        return {name: getattr(self, column) for column, name in _ORG_COLUMNS.items()}

    def accounts(self) -> list[tuple[str, str, str]]:
        """(platform, workspace id, user id) for each platform this row names a user on."""
        out = []
        if self.slack_user_id:
            out.append((Platform.SLACK.value, self.slack_team_id, self.slack_user_id))
        if self.teams_aad_object_id:
            out.append((Platform.TEAMS.value, self.teams_tenant_id, self.teams_aad_object_id))
        return out


# --------------------------------------------------------------------------- parsing


def nfc(value: str) -> str:
    """Unicode's composed form: a file exported on a Mac (or pasted from a PDF) may write "é" as
    "e" and a combining accent, which compares unequal to the "é" a CAM types."""
    return unicodedata.normalize("NFC", value)


def org_key(org_id: str) -> str:
    """How organisation ids compare: in any case (an `org:` audience matches them so too), and
    whatever the Unicode form an older import stored them in."""
    return nfc(org_id.strip()).lower()


def normalise_email(value: str) -> str:
    """The normalised, lower-cased address; ValueError with a readable reason if invalid."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def _email_key(value: str) -> str:
    """How a possibly invalid address compares with stored (normalised) ones."""
    try:
        return normalise_email(value)
    except ValueError:
        return value.strip().lower()


# A CAM's address repeats on every row of their organisations.
_normalise_repeated_email = lru_cache(maxsize=4096)(normalise_email)


@lru_cache(maxsize=1)
def _timezones_by_lower_name() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


@lru_cache(maxsize=1024)
def canonical_timezone(value: str) -> str | None:
    """The IANA name for `value` (case-insensitive), or None if there is no such zone."""
    value = value.strip()
    if not value:
        return None
    try:
        ZoneInfo(value)
        return value
    except (ZoneInfoNotFoundError, ValueError):
        pass
    return _timezones_by_lower_name().get(value.lower())


@lru_cache(maxsize=1)
def _max_lengths() -> dict[str, int]:
    return {
        column: model._meta.fields_map[name].max_length
        for column, (model, name) in _LENGTH_SOURCES.items()
    }


@dataclass
class _Parsed:
    rows: list[DirectoryRow]
    errors: list[RowError]
    # (org_key, e-mail) of every row in the file, rejected ones included: these members are
    # "present" and never deactivated because of a typo elsewhere in their row.
    mentioned: set[tuple[str, str]] = field(default_factory=set)
    data_rows: int = 0
    # rows that could not be split into the header's cells: whose they are is unknown, so an import
    # with any deactivates nobody
    unreadable: int = 0
    ignored_columns: list[str] = field(default_factory=list)  # header names that are not directory columns


#: Cell separators a directory file may use: Excel writes ';' for "CSV" where the decimal
#: separator is a comma (much of Europe), and tabs for "Unicode text".
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def detect_delimiter(text: str) -> str:
    """The separator of a directory file, told from its header: the one that splits it into the
    most known column names (a comma when none does). The header's cells are fixed names with
    no separator in them, so this needs no guessing from the data, as csv.Sniffer does."""
    header = next((line for line in text.lstrip("\ufeff").splitlines() if line.strip()), "")

    def known(delimiter: str) -> int:
        cells = next(csv.reader([header], delimiter=delimiter), [])
        return sum(cell.strip().lower() in COLUMNS for cell in cells)

    return max(DELIMITERS, key=lambda d: (known(d), d == ","))


def _records(text: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) for each non-blank CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UserError(f"the directory file is not valid CSV (line {start}): {exc}") from None
        if any(cell.strip() for cell in cells):
            yield start, cells


def describe_columns(names: Sequence[str]) -> str:
    shown = [repr(c if len(c) <= 40 else c[:40] + "…") for c in names[:5]]
    return ", ".join(shown) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _read_header(cells: list[str]) -> tuple[list[str], list[str]]:
    """(the header's column names, those that are not directory columns). A CRM or spreadsheet
    export has columns of its own: with every directory column present they are ignored; with
    one missing (perhaps misspelt as one of them) the file is refused, naming both."""
    header = [cell.strip().lower() for cell in cells]
    duplicated = sorted({c for c in header if c in COLUMNS and header.count(c) > 1})
    missing = [c for c in COLUMNS if c not in header]
    unknown = list(dict.fromkeys(c for c in header if c not in COLUMNS))
    problems = []
    if missing:
        problems.append("missing column(s): " + ", ".join(missing))
        if unknown:
            problems.append("unknown column(s): " + describe_columns(unknown))
    if duplicated:
        problems.append("repeated column(s): " + ", ".join(duplicated))
    if problems:
        raise UserError(
            "the directory file's header is wrong: "
            + "; ".join(problems)
            + ". Expected these columns (any order; others are ignored): "
            + ",".join(COLUMNS)
        )
    return header, unknown


def _validate_row(
    line: int, raw: dict[str, str], roles: Sequence[str]
) -> tuple[DirectoryRow | None, list[str]]:
    problems: list[str] = []
    values = {column: nfc(raw[column]).strip() for column in COLUMNS}

    for column in REQUIRED:
        if not values[column]:
            problems.append(f"{column} is empty")
    limits = _max_lengths()
    for column, value in values.items():
        if len(value) > limits[column]:
            problems.append(f"{column} is longer than {limits[column]} characters")

    if values["member_email"]:
        try:
            values["member_email"] = normalise_email(values["member_email"])
        except ValueError as exc:
            problems.append(f"member_email '{values['member_email']}' is not valid: {exc}")
    if values["cam_email"]:
        try:
            values["cam_email"] = _normalise_repeated_email(values["cam_email"])
        except ValueError as exc:
            problems.append(f"cam_email '{values['cam_email']}' is not valid: {exc}")

    if values["role"]:
        role = values["role"].lower()
        if role in roles:
            values["role"] = role
        else:
            problems.append(f"unknown role '{values['role']}'; allowed roles: {', '.join(roles)}")

    if values["timezone"]:
        zone = canonical_timezone(values["timezone"])
        if zone is None:
            problems.append(
                f"unknown time zone '{values['timezone']}' (use an IANA name such as "
                "'Europe/London' or 'America/New_York')"
            )
        else:
            values["timezone"] = zone

    for column in _LOWERED_ORG_COLUMNS:
        values[column] = values[column].lower()
    # Teams sends tenant and AAD object ids as lower-case GUIDs; Slack's ids are upper-case.
    values["teams_tenant_id"] = values["teams_tenant_id"].lower()
    values["teams_aad_object_id"] = values["teams_aad_object_id"].lower()
    values["slack_team_id"] = values["slack_team_id"].upper()
    values["slack_user_id"] = values["slack_user_id"].upper()

    if values["slack_user_id"] and not values["slack_team_id"]:
        problems.append("slack_user_id is set but slack_team_id is empty")
    if values["slack_team_id"] and not values["slack_user_id"]:
        problems.append("slack_team_id is set but slack_user_id is empty")
    if values["teams_aad_object_id"] and not values["teams_tenant_id"]:
        problems.append("teams_aad_object_id is set but teams_tenant_id is empty")

    if problems:
        return None, problems
    return DirectoryRow(line=line, **values), []


def _parse(text: str, roles: Sequence[str] | None = None, progress: Progress = no_progress) -> _Parsed:
    if roles is None:
        from bot.topics.catalog import load_catalog

        roles = load_catalog().roles
    roles = tuple(r.lower() for r in roles)

    if text.startswith("\ufeff"):  # Excel's UTF-8 byte order mark
        text = text[1:]
    if not text.strip():
        raise UserError("the directory file is empty")
    delimiter = detect_delimiter(text)
    records = _records(text, delimiter)
    first_record = next(records, None)
    if first_record is None:
        raise UserError("the directory file is empty")
    header, ignored = _read_header(first_record[1])

    parsed = _Parsed(rows=[], errors=[], ignored_columns=ignored)
    seen_members: dict[tuple[str, str], int] = {}
    org_first: dict[str, DirectoryRow] = {}  # org_key -> the organisation's first good row
    seen_accounts: dict[tuple[str, str, str], int] = {}

    expected = max(text.count("\n") - 1, 1)  # about a line per row after the header (a quoted cell may hold a newline)
    for line, cells in records:
        parsed.data_rows += 1
        if parsed.data_rows % 1000 == 0:
            progress("checking rows", parsed.data_rows, max(expected, parsed.data_rows))
        if len(cells) != len(header):
            parsed.unreadable += 1
            parsed.errors.append(
                RowError(line, f"expected {len(header)} cells, found {len(cells)} (a {_DELIMITER_NAMES[delimiter]} "
                               f"inside a cell needs quotes); a file with such a row deactivates nobody")
            )
            continue
        raw = dict(zip(header, cells, strict=True))
        row, problems = _validate_row(line, raw, roles)
        if row is not None:
            parsed.mentioned.add(row.key)
        else:
            parsed.mentioned.add((org_key(raw["org_id"]), _email_key(raw["member_email"])))
            parsed.errors.append(RowError(line, "; ".join(problems)))
            continue

        if row.key in seen_members:
            parsed.errors.append(
                RowError(
                    line,
                    f"duplicate member {row.member_email} in organisation {row.org_id} "
                    f"(already on line {seen_members[row.key]})",
                )
            )
            continue
        first = org_first.get(row.org_key)
        if first is not None and first.org_id != row.org_id:
            parsed.errors.append(RowError(line, f"organisation id '{row.org_id}' is '{first.org_id}' on line "
                                                f"{first.line}: ids match in any case, write it one way"))
            continue
        if first is not None:
            conflicts = [
                column
                for column in _ORG_COLUMNS
                if getattr(row, column) != getattr(first, column)
            ]
            if conflicts:
                detail = ", ".join(
                    f"{c} '{getattr(row, c)}' (line {first.line} says '{getattr(first, c)}')"
                    for c in conflicts
                )
                reason = f"organisation {row.org_id} conflicts with an earlier row: {detail}"
                parsed.errors.append(RowError(line, reason))
                continue
        duplicate_account = next(
            ((acc, seen_accounts[acc]) for acc in row.accounts() if acc in seen_accounts), None
        )
        if duplicate_account is not None:
            (platform, workspace, user), other = duplicate_account
            reason = f"{platform} user {workspace}/{user} is already used on line {other}"
            parsed.errors.append(RowError(line, reason))
            continue

        seen_members[row.key] = line
        org_first.setdefault(row.org_key, row)
        for acc in row.accounts():
            seen_accounts[acc] = line
        parsed.rows.append(row)

    if parsed.data_rows == 0:
        raise UserError("the directory file has a header but no member rows")
    return parsed


#: How spreadsheet files that are not text begin: a zip (.xlsx, .ods) and an OLE2 compound file (.xls).
_WORKBOOK_SIGNATURES = ((b"PK\x03\x04", "a spreadsheet workbook (.xlsx or .ods)"),
                        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"))


def refuse_workbook(data: bytes) -> None:
    """A workbook saved as is, not exported to CSV, would be decoded as Windows-1252 and rejected
    for a header of binary junk: say what it is and how to export it instead."""
    for signature, what in _WORKBOOK_SIGNATURES:
        if data.startswith(signature):
            raise UserError(f"the directory file is {what}, not CSV: in the spreadsheet, save it as "
                            f"\"CSV UTF-8 (Comma delimited)\" (or CSV) and import that file")


def decode_directory_file(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a directory file as spreadsheets save them: UTF-8 (with or without a
    BOM), UTF-16 (with a BOM, or little/big-endian text without one), else Windows-1252, the
    "CSV" Excel writes on Windows (Latin-1 for the few bytes it leaves undefined). A workbook
    (.xlsx, .xls, .ods) is refused with how to export it (UserError)."""
    refuse_workbook(data)
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError:
                break
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) >= len(sample) // 3:  # ASCII-range text in UTF-16
        encoding = "utf-16-le" if sample[1::2].count(0) > sample[0::2].count(0) else "utf-16-be"
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def read_directory_csv(
    text: str, *, roles: Sequence[str] | None = None
) -> tuple[list[DirectoryRow], list[RowError]]:
    """Parse and validate a directory CSV (no database access).

    Returns the good rows and one RowError per rejected line. Whole-file problems (empty file,
    wrong header, unreadable CSV) raise UserError. `roles` defaults to the topic catalog's roles.
    """
    parsed = _parse(text, roles)
    return parsed.rows, parsed.errors


# --------------------------------------------------------------------------- planning

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _filter_in(
    model: Any, column: str, values: Iterable[Any], *, only: Sequence[str] = (), **extra: Any
) -> list[Any]:
    """model.filter(column__in=values, **extra), chunked; dicts of `only` columns if given."""
    unique = sorted(set(values))
    out: list[Any] = []
    for part in _chunks(unique):
        query = model.filter(**{f"{column}__in": part}, **extra)
        out.extend(await (query.values(*only) if only else query))
    return out


MemberKey = tuple[str, str]  # (org_key, normalised e-mail)

_GROUPED_ORG_FIELDS = ("tier", "region", "cam_email")  # what the engagement figures take from an organisation
_ORG_UPDATE_FIELDS = ["external_id", *_ORG_COLUMNS.values(), "updated_at"]
_MEMBER_UPDATE_FIELDS = [*_MEMBER_FIELDS, "updated_at"]
_ACCOUNT_UPDATE_FIELDS = [
    "member_id",
    "workspace_external_id",
    "user_id",
    "dm_channel",
    "service_url",
    "updated_at",
]


@dataclass
class _Plan:
    """Everything an import would write, computed from one read of the database."""

    orgs: dict[str, Organisation] = field(default_factory=dict)  # org_key -> (possibly new) org
    org_create: list[Organisation] = field(default_factory=list)
    org_update: list[Organisation] = field(default_factory=list)
    member_ids: dict[MemberKey, int] = field(default_factory=dict)  # existing members
    member_create: list[tuple[str, Member]] = field(default_factory=list)  # (org_key, member)
    member_update: list[Member] = field(default_factory=list)
    account_delete: list[int] = field(default_factory=list)
    account_update: list[PlatformAccount] = field(default_factory=list)
    account_transfer: list[tuple[PlatformAccount, MemberKey]] = field(default_factory=list)
    account_create: list[tuple[MemberKey, tuple[str, str, str]]] = field(default_factory=list)
    deactivate: list[int] = field(default_factory=list)
    reactivate: list[int] = field(default_factory=list)  # inactive members the file names again
    organisation_of: dict[int, str] = field(default_factory=dict)  # member id -> org_id, of those two
    # what the engagement figures group by changed: members' role, organisations' tier, region, CAM
    regrouped_members: list[int] = field(default_factory=list)
    regrouped_orgs: list[int] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    cancelled: int = 0  # copies still to be sent to the members deactivated
    rejected: list[RowError] = field(default_factory=list)


async def _load_holders(member_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    holders: dict[int, dict[str, Any]] = {}
    for part in _chunks(sorted(set(member_ids))):
        for m in await Member.filter(id__in=part).values(
            "id", "email", "active", "organisation__external_id"
        ):
            holders[m["id"]] = m
    return holders


async def _existing_organisations(keys: set[str]) -> list[Organisation]:
    """The stored organisations whose ids are `keys` in any case. Compared here, not in SQL: SQLite's
    LOWER() leaves non-ASCII letters alone. Where an older import made two spellings of one id,
    the oldest organisation is the one the file updates."""
    chosen: dict[str, int] = {}
    for org_id, external_id in sorted(await Organisation.all().values_list("id", "external_id")):
        key = org_key(external_id)
        if key in keys:
            chosen.setdefault(key, org_id)
    return await _filter_in(Organisation, "id", chosen.values())


async def _composed_id(org: Organisation) -> str:
    """The organisation's id in composed form (how audiences are typed), unless another
    organisation already has that spelling; its case as stored."""
    composed = nfc(org.external_id)
    if composed == org.external_id or await Organisation.filter(external_id=composed).exists():
        return org.external_id
    return composed


async def _make_plan(parsed: _Parsed, *, deactivate_missing: bool, now: datetime,
                     allow_mass_deactivation: bool = False) -> _Plan:
    plan = _Plan()
    rows = parsed.rows

    # -- load what the file touches, in a few bulk queries
    existing_orgs = await _existing_organisations({r.org_key for r in rows})
    plan.orgs = {org_key(o.external_id): o for o in existing_orgs}
    org_external = {o.id: org_key(o.external_id) for o in existing_orgs}
    # Members and accounts are loaded as dicts (no model instances, no timestamp parsing);
    # model instances are built only for the rows that change.
    members: dict[MemberKey, dict[str, Any]] = {}
    for m in sorted(
        await _filter_in(Member, "organisation_id", org_external, only=_MEMBER_COLUMNS),
        key=lambda m: m["id"],
    ):
        members.setdefault((org_external[m["organisation_id"]], m["email"].lower()), m)
    plan.member_ids = {key: m["id"] for key, m in members.items()}

    accounts_by_member: dict[int, dict[str, dict[str, Any]]] = {}  # first account per platform
    account_by_ids: dict[tuple[str, str, str], dict[str, Any]] = {}

    def remember(accounts: list[dict[str, Any]]) -> None:
        for acc in sorted(accounts, key=lambda a: a["id"]):
            account_by_ids.setdefault(
                (acc["platform"], acc["workspace_external_id"], acc["user_id"]), acc
            )
            accounts_by_member.setdefault(acc["member_id"], {}).setdefault(acc["platform"], acc)

    remember(
        await _filter_in(
            PlatformAccount, "member_id", plan.member_ids.values(), only=_ACCOUNT_COLUMNS
        )
    )
    wanted = {ids for r in rows for ids in r.accounts()}
    for platform in (Platform.SLACK.value, Platform.TEAMS.value):
        # Accounts the file names that are linked to members outside its organisations.
        users = [u for (p, w, u) in wanted if p == platform and (p, w, u) not in account_by_ids]
        remember(
            await _filter_in(
                PlatformAccount, "user_id", users, only=_ACCOUNT_COLUMNS, platform=platform
            )
        )

    # Members other than the row's own who hold an account the row names.
    holder_ids = set()
    for row in rows:
        member = members.get(row.key)
        for ids in row.accounts():
            current = account_by_ids.get(ids)
            if current is not None and (member is None or current["member_id"] != member["id"]):
                holder_ids.add(current["member_id"])
    holders = await _load_holders(holder_ids)

    def may_take_over(holder: dict[str, Any]) -> bool:
        """An account may move off a member who is not in the file and is (about to be) inactive."""
        key = (org_key(holder["organisation__external_id"]), holder["email"].lower())
        if key in parsed.mentioned:
            return False
        return not holder["active"] or deactivate_missing

    def _how_to_move(holder: dict[str, Any]) -> str:
        """What to do about a row naming an account another member holds (a member moving organisation)."""
        if (org_key(holder["organisation__external_id"]), holder["email"].lower()) in parsed.mentioned:
            return ("whom this file names too (a blank id cell leaves an account where it is): give the ids on "
                    "one of the two rows only")
        return ("whom this file leaves out: if they moved here, import it with --deactivate-missing (they are "
                "deactivated there and the account moves here), or remove the ids from this row")

    # -- members and their accounts
    accepted: list[DirectoryRow] = []
    for row in rows:
        member = members.get(row.key)
        own = accounts_by_member.get(member["id"], {}) if member is not None else {}
        actions: list[tuple[str, Any]] = []
        problem = None
        for ids in row.accounts():
            platform, workspace, user = ids
            current = account_by_ids.get(ids)
            if current is not None and member is not None and current["member_id"] == member["id"]:
                continue  # already linked
            if current is not None:
                holder = holders[current["member_id"]]
                if not may_take_over(holder):
                    problem = (
                        f"{platform} user {workspace}/{user} is already linked to "
                        f"{holder['email']} in organisation {holder['organisation__external_id']}, "
                        + _how_to_move(holder)
                    )
                    break
                actions.append(("transfer", (current, own.get(platform))))
            elif platform in own:
                actions.append(("retarget", (own[platform], ids)))
            else:
                actions.append(("create", ids))
        if problem is not None:
            plan.rejected.append(RowError(row.line, problem))
            continue

        accepted.append(row)
        desired_member = {
            "email": row.member_email,
            "name": row.member_name,
            "role": row.role,
            **_imported_timezone(row, member),
            "locale": row.locale,
            "active": True,
        }
        if member is None:
            # joining Herald is what onboarding journeys count from: the import's (injected) time
            plan.member_create.append((row.org_key, Member(**desired_member, joined_at=now)))
            plan.created += 1
        else:
            changed = bool(actions)
            if any(member[k] != v for k, v in desired_member.items()):
                plan.member_update.append(Member(id=member["id"], **desired_member))
                changed = True
                if member["role"] != desired_member["role"]:
                    plan.regrouped_members.append(member["id"])
            if not member["active"]:
                plan.reactivate.append(member["id"])
                plan.organisation_of[member["id"]] = plan.orgs[row.org_key].external_id
            if changed:
                plan.updated += 1
            else:
                plan.unchanged += 1

        for kind, detail in actions:
            if kind == "create":
                plan.account_create.append((row.key, detail))
            elif kind == "retarget":
                acc, (_, workspace, user) = detail
                plan.account_update.append(
                    PlatformAccount(
                        id=acc["id"],
                        member_id=acc["member_id"],
                        platform=acc["platform"],
                        workspace_external_id=workspace,
                        user_id=user,
                        dm_channel="",  # the cached conversation was with the old user
                        # Teams service URLs belong to the tenant
                        service_url=(
                            acc["service_url"] if acc["workspace_external_id"] == workspace else ""
                        ),
                    )
                )
            else:
                # The ids are unchanged, so the cached conversation stays valid: move the row.
                acc, stale = detail
                if stale is not None:
                    plan.account_delete.append(stale["id"])
                plan.account_transfer.append((PlatformAccount(**acc), row.key))

    # -- organisations of the accepted rows: the first row of each org_id states its attributes
    seen_orgs: set[str] = set()
    for row in accepted:
        if row.org_key in seen_orgs:
            continue
        seen_orgs.add(row.org_key)
        desired = row.organisation_fields()
        org = plan.orgs.get(row.org_key)
        if org is None:
            org = Organisation(external_id=row.org_id, **desired)
            plan.orgs[row.org_key] = org
            plan.org_create.append(org)
            continue
        composed = await _composed_id(org)
        if composed != org.external_id or any(getattr(org, name) != value for name, value in desired.items()):
            if any(getattr(org, name) != desired[name] for name in _GROUPED_ORG_FIELDS if name in desired):
                plan.regrouped_orgs.append(org.id)
            org.external_id = composed
            for name, value in desired.items():
                setattr(org, name, value)
            plan.org_update.append(org)

    # -- deactivation: active members the file does not mention at all
    if deactivate_missing and not parsed.unreadable:
        active = await Member.filter(active=True).values("id", "email", "organisation__external_id")
        unnamed: dict[str, str] = {}  # org_key -> id of organisations the file names nobody of
        named_orgs = {org for org, _ in parsed.mentioned}
        for m in active:
            key = org_key(m["organisation__external_id"])
            if (key, m["email"].lower()) not in parsed.mentioned:
                plan.deactivate.append(m["id"])
                plan.organisation_of[m["id"]] = m["organisation__external_id"]
                if key not in named_orgs:
                    unnamed.setdefault(key, m["organisation__external_id"])
        if len(plan.deactivate) * 2 > len(active) and not allow_mass_deactivation:
            raise UserError(_mass_deactivation_refused(len(plan.deactivate), len(active), sorted(unnamed.values())))
        for part in _chunks(sorted(plan.deactivate)):
            plan.cancelled += await Delivery.filter(member_id__in=part, status__in=_UNSENT).count()
    return plan


def _mass_deactivation_refused(leaving: int, active: int, unnamed: list[str]) -> str:
    """Why an import that would deactivate most of the directory is refused, and what to do."""
    shown = ", ".join(unnamed[:5]) + (f" and {len(unnamed) - 5} more" if len(unnamed) > 5 else "")
    which = (f", all of organisation{'s' if len(unnamed) > 1 else ''} {shown}, which the file does not name"
             if unnamed else "")
    return (f"--deactivate-missing would deactivate {leaving} of the {active} active members{which}: "
            "is this one partner's export, or a file cut short? Nothing was imported. Import it without "
            "--deactivate-missing, or add --allow-mass-deactivation if they really are to go")


async def _cams_unknown(organisations: Iterable[Organisation]) -> dict[str, list[str]]:
    """The CAM addresses the file's organisations name that are no active CAM or admin (a typo,
    or someone not added as staff yet), each with those organisations: their partners' questions
    and escalations have nobody to go to (`herald doctor` warns of it too)."""
    named: dict[str, list[str]] = {}
    for org in organisations:
        if org.cam_email:
            named.setdefault(org.cam_email.strip().lower(), []).append(org.external_id)
    able = {s["email"].lower() for s in await _filter_in(Staff, "email", named, only=("email",), active=True,
                                                         role__in=sorted(SENDERS))}
    return {email: sorted(orgs) for email, orgs in sorted(named.items()) if email not in able}


def _imported_timezone(row: DirectoryRow, member: dict[str, Any] | None) -> dict[str, Any]:
    """The zone a member gets from their row (`timezone`, `timezone_from_directory`): the row's,
    except that a zone the member chose in their preferences stays theirs and a blank cell changes
    nothing (a new member's is UTC, until Teams tells their device's: see
    bot.core.directory.preferences.adopt_device_timezone)."""
    if member is None:
        return {"timezone": row.timezone or "UTC", "timezone_from_directory": bool(row.timezone)}
    if member["timezone_chosen"] or not row.timezone:
        return {"timezone": member["timezone"], "timezone_from_directory": member["timezone_from_directory"]}
    return {"timezone": row.timezone, "timezone_from_directory": True}


async def _apply(plan: _Plan, *, now: datetime, actor: str, progress: Progress = no_progress) -> list[PendingEvent]:
    """Write the plan; the audit events of what it did to members one by one: each deactivated
    (`member.deactivated`, and `delivery.cancelled` for each copy no longer to be sent to them)
    and each brought back (`member.reactivated`)."""
    changed_accounts = plan.account_update + [acc for acc, _ in plan.account_transfer]
    total = (len(plan.org_create) + len(plan.org_update) + len(plan.member_create) + len(plan.member_update)
             + len(plan.account_delete) + len(changed_accounts) + len(plan.account_create) + len(plan.deactivate))
    done = 0

    async def in_chunks(items: Sequence[T], write: Callable[[Sequence[T]], Awaitable[object]]) -> None:
        nonlocal done
        for part in _chunks(items):
            await write(part)
            done += len(part)
            progress("writing", done, total)

    if plan.org_create:
        await in_chunks(plan.org_create, Organisation.bulk_create)
        for org in await _filter_in(
            Organisation, "external_id", (o.external_id for o in plan.org_create)
        ):
            plan.orgs[org_key(org.external_id)] = org
    await in_chunks(plan.org_update, lambda part: Organisation.bulk_update(part, fields=_ORG_UPDATE_FIELDS))

    member_ids = dict(plan.member_ids)
    if plan.member_create:
        for key, member in plan.member_create:
            member.organisation_id = plan.orgs[key].id
        await in_chunks([m for _, m in plan.member_create], Member.bulk_create)
        org_external = {plan.orgs[key].id: key for key, _ in plan.member_create}
        for part in _chunks(sorted(org_external)):
            for m in await Member.filter(organisation_id__in=part).values(
                "id", "organisation_id", "email"
            ):
                member_ids.setdefault((org_external[m["organisation_id"]], m["email"].lower()), m["id"])
    await in_chunks(plan.member_update, lambda part: Member.bulk_update(part, fields=_MEMBER_UPDATE_FIELDS))

    await in_chunks(plan.account_delete, lambda part: PlatformAccount.filter(id__in=part).delete())
    for acc, key in plan.account_transfer:
        acc.member_id = member_ids[key]
    await in_chunks(changed_accounts, lambda part: PlatformAccount.bulk_update(part, fields=_ACCOUNT_UPDATE_FIELDS))
    await in_chunks(
        [
            PlatformAccount(
                member_id=member_ids[key],
                platform=platform,
                workspace_external_id=workspace,
                user_id=user,
            )
            for key, (platform, workspace, user) in plan.account_create
        ],
        PlatformAccount.bulk_create,
    )
    await in_chunks(plan.deactivate, lambda part: Member.filter(id__in=part).update(active=False, updated_at=now))
    # what was still to be sent to them (a held-back A/B share, a queued copy) is not sent any more
    to_cancel: list[int] = []
    for part in _chunks(sorted(plan.deactivate)):
        to_cancel += await Delivery.filter(member_id__in=part, status__in=_UNSENT).values_list("id", flat=True)
    await in_chunks(plan.deactivate, lambda part: Delivery.filter(member_id__in=part, status__in=_UNSENT).update(
        status=DeliveryStatus.CANCELLED.value, error=REMOVED_FROM_DIRECTORY, updated_at=now))
    if total == 0:
        progress("writing", 0, 0)

    events = [audit_event("member.deactivated", now=now, actor=actor, member_id=member_id,
                          organisation=plan.organisation_of[member_id], reason=LEFT_OUT)
              for member_id in sorted(plan.deactivate)]
    for part in _chunks(sorted(to_cancel)):
        cancelled = await Delivery.filter(
            id__in=part, status=DeliveryStatus.CANCELLED.value, error=REMOVED_FROM_DIRECTORY,
        ).order_by("id").values("id", "notice_id", "member_id", "platform", "kind")
        events += [audit_event("delivery.cancelled", now=now, actor=actor, notice_id=c["notice_id"],
                               member_id=c["member_id"], platform=c["platform"], delivery_id=c["id"], copy=c["kind"],
                               reason=REMOVED_FROM_DIRECTORY) for c in cancelled]
    events += [audit_event("member.reactivated", now=now, actor=actor, member_id=member_id,
                           organisation=plan.organisation_of[member_id], reason="named again in a directory import")
               for member_id in sorted(plan.reactivate)]
    return events


#: Why a member was deactivated (the `member.deactivated` event's reason).
LEFT_OUT = "left out of a directory import with --deactivate-missing"


# --------------------------------------------------------------------------- import


async def import_directory(
    text: str,
    *,
    now: datetime,
    actor: str = "cli",
    dry_run: bool = False,
    deactivate_missing: bool = False,
    allow_mass_deactivation: bool = False,
    roles: Sequence[str] | None = None,
    progress: Progress = no_progress,
) -> ImportResult:
    """Upsert the organisations, members and platform accounts of a directory CSV.

    Rejected rows are reported (by CSV line) and skipped; the rest import in one transaction
    with a `directory.imported` audit event. `dry_run` reports the same counts without writing.
    `deactivate_missing` deactivates every active member the file does not mention (their copies
    still to be sent are cancelled); a member it names again is reactivated and gets those copies
    of notices still live after all (`bot.core.notices.rejoining`). An import (or dry run) that
    would so deactivate more than half of the active members is refused (UserError, nothing
    written) unless `allow_mass_deactivation`: a partial export would otherwise empty the directory.
    """
    parsed = _parse(text, roles, progress)
    progress("checking rows", parsed.data_rows, parsed.data_rows)

    async def result(plan: _Plan) -> ImportResult:
        return ImportResult(
            created=plan.created,
            updated=plan.updated,
            unchanged=plan.unchanged,
            deactivated=len(plan.deactivate),
            rejected=sorted(parsed.errors + plan.rejected, key=lambda e: e.line),
            dry_run=dry_run,
            organisations_created=len(plan.org_create),
            organisations_updated=len(plan.org_update),
            ignored_columns=parsed.ignored_columns,
            unknown_cams=await _cams_unknown(plan.orgs.values()),
            cancelled=plan.cancelled,
        )

    if dry_run:
        plan = await _make_plan(parsed, deactivate_missing=deactivate_missing, now=now,
                                allow_mass_deactivation=allow_mass_deactivation)
        outcome = await result(plan)
        outcome.restored = await restorable_copies(plan.reactivate)  # what the real run would put back
        return outcome

    async with in_transaction() as conn:
        # Overlapping imports (a slow run and the next cron tick) take turns: planned side by side,
        # both would insert the same new rows and the second die on a unique key. It waits, then
        # plans against what the first wrote (unchanged).
        await storage_db.take_turns(conn, storage_db.DIRECTORY_IMPORT_LOCK_KEY)
        plan = await _make_plan(parsed, deactivate_missing=deactivate_missing, now=now,
                                allow_mass_deactivation=allow_mass_deactivation)
        member_events = await _apply(plan, now=now, actor=actor, progress=progress)
        # members back in the directory: what was cancelled when they were left out goes out after all
        restored = await restore_copies(plan.reactivate, now=now, actor=actor)
        restored_reminders = await resume_reminders(plan.reactivate, now=now, actor=actor)
        outcome = await result(plan)
        outcome.restored = len(restored)
        # an organisation given another CAM: its open hand-offs go to them
        reassigned = await follow_organisation_cams([o.id for o in plan.org_update], now=now, actor=actor)
        # the engagement figures of the notices that reached what changed are worked out again
        await mark_for_recount(member_ids=plan.regrouped_members, organisation_ids=plan.regrouped_orgs)
        await record([audit_event(
            "directory.imported", now=now, actor=actor, rows=parsed.data_rows, created=outcome.created,
            updated=outcome.updated, unchanged=outcome.unchanged, deactivated=outcome.deactivated,
            rejected=len(outcome.rejected), organisations_created=outcome.organisations_created,
            organisations_updated=outcome.organisations_updated, deactivate_missing=deactivate_missing,
            restored=outcome.restored), *member_events, *reassigned, *restored, *restored_reminders])
    return outcome
