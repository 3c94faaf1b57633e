"""Bearer tokens for the reports API.

A token is shown once, when it is created; the database keeps only its SHA-256 (hex), so a
leaked database does not leak usable tokens. A token acts as the staff member it belongs to,
with the role it was created with: it reads at most what that role may, and, should the person's
role change to one that may read less, only what both may (`acting_role`). It stops working when
it expires, when it is revoked, or when the staff member is made inactive.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from bot.common.errors import NotFound, UserError
from bot.core.compliance.audit import audit_event, record
from storage.models import MAX_ROW_ID, ApiToken, Staff, StaffRole

TOKEN_PREFIX = "hrld_"
MAX_NAME = 100
MAX_TOKEN_LENGTH = 200
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute
MIN_FINGERPRINT = 8
# A token lives a year unless told otherwise: a BI tool's or a GRC system's token is renewed at
# most once a year (the yearly access review), and one forgotten in a retired dashboard stops.
DEFAULT_LIFETIME = timedelta(days=365)
EXPIRY_WARNING = timedelta(days=14)  # `herald doctor` names tokens expiring this soon

# How much each role reads through the API: compliance and admins every notice, a CAM their own
# and those escalated to them (bot.core.compliance.reports.can_read_notice).
_READS = {StaffRole.CAM.value: 1, StaffRole.COMPLIANCE.value: 2, StaffRole.ADMIN.value: 2}


class TokenExpired(Exception):
    """A valid token past its expiry."""

    def __init__(self, expired_at: datetime) -> None:
        super().__init__(f"this token expired on {when(expired_at)}")
        self.expired_at = expired_at


def when(moment: datetime) -> str:
    """A token's expiry as people read it: `2027-01-05 09:00 UTC`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def acting_role(token_role: str, staff_role: str) -> str | None:
    """The role a token reads with: the one it was created with, or its person's current role if
    that may read less (what both allow); None if either is not a role that reads reports."""
    if token_role not in _READS or staff_role not in _READS:
        return None
    return staff_role if _READS[staff_role] < _READS[token_role] else token_role


def expired(token: ApiToken, now: datetime) -> bool:
    return token.expires_at is not None and token.expires_at <= now


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def fingerprint(token: ApiToken) -> str:
    """A short, non-secret handle for a token (the start of its hash), shown by `token list`."""
    return token.token_hash[:12]


_DEFAULT: Any = object()


async def create_token(email: str, *, name: str = "", now: datetime, actor: str = "",
                       expires_at: datetime | None = _DEFAULT) -> tuple[ApiToken, str]:
    """A new token for the active staff member with this e-mail, bound to their role now; returns
    (row, plaintext). It expires at `expires_at` (None: never; by default DEFAULT_LIFETIME from now).

    The plaintext is not stored anywhere: the caller must show it now or never."""
    address = (email or "").strip().lower()
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise UserError(f"the token name is {len(name)} characters; keep it under {MAX_NAME}")
    if expires_at is _DEFAULT:
        expires_at = now + DEFAULT_LIFETIME
    if expires_at is not None and expires_at <= now:
        raise UserError(f"the expiry {when(expires_at)} is not in the future")
    staff = await Staff.get_or_none(email=address)
    if staff is None:
        raise UserError(f"no staff member with e-mail '{address}'; add them with `herald staff add` first")
    if not staff.active:
        raise UserError(f"staff member {address} is inactive; reactivate them before creating a token")
    if staff.role not in _READS:
        raise UserError(f"staff member {address} has the role '{staff.role}', which reads no reports")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with in_transaction() as conn:
        token = await ApiToken.create(staff=staff, token_hash=hash_token(plaintext), name=name, created_at=now,
                                      role=staff.role, expires_at=expires_at, using_db=conn)
        await record([audit_event("token.created", now=now, actor=actor or address, token_id=token.id,
                                  staff_id=staff.id, staff_email=address, role=staff.role, name=name,
                                  fingerprint=fingerprint(token),
                                  expires_at=expires_at)], using_db=conn)
    token.staff = staff
    return token, plaintext


async def authenticate(plaintext: str | None, *, now: datetime) -> Staff | None:
    """The active staff member a valid, unrevoked token belongs to, as the token reads: `role`
    is `acting_role` (a copy of the row, never saved); None for anything else. Raises
    TokenExpired for a token that would be valid but for its expiry."""
    if not plaintext or len(plaintext) > MAX_TOKEN_LENGTH:
        return None
    token = await ApiToken.filter(token_hash=hash_token(plaintext)).select_related("staff").first()
    if token is None or token.revoked_at is not None:
        return None
    staff = token.staff
    if staff is None or not staff.active:
        return None
    role = acting_role(token.role, staff.role)
    if role is None:
        return None
    if expired(token, now):
        raise TokenExpired(token.expires_at)  # type: ignore[arg-type]
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        await ApiToken.filter(id=token.id).update(last_used_at=now)
    acting = copy.copy(staff)
    acting.role = role
    return acting


async def _find(token_id_or_prefix: str | int) -> ApiToken:
    ref = str(token_id_or_prefix).strip()
    if not ref:
        raise UserError("name the token to revoke: its id, its fingerprint (from `herald token list`) or the token")
    if ref.isdigit():
        return await _find_by_digits(ref)
    if ref.startswith(TOKEN_PREFIX):
        token = await ApiToken.get_or_none(token_hash=hash_token(ref))
        if token is None:
            raise NotFound("no API token matches that token")
        return token
    lowered = ref.lower()
    if len(lowered) < MIN_FINGERPRINT or any(c not in "0123456789abcdef" for c in lowered):
        raise UserError(f"'{ref[:20]}' is not a token id, a fingerprint of at least {MIN_FINGERPRINT} "
                        "hex digits, or a token")
    token = await _by_fingerprint(lowered)
    if token is None:
        raise NotFound(f"no API token with fingerprint {lowered}")
    return token


async def _find_by_digits(ref: str) -> ApiToken:
    """A reference of digits only is an id, or a fingerprint that happens to have no letter in it
    (one in about 280 twelve-digit fingerprints): both are looked up, and both matching is an error."""
    as_id = int(ref)
    by_id = await ApiToken.get_or_none(id=as_id) if as_id <= MAX_ROW_ID else None
    by_fingerprint = await _by_fingerprint(ref) if len(ref) >= MIN_FINGERPRINT else None
    if by_id is not None and by_fingerprint is not None and by_id.id != by_fingerprint.id:
        raise UserError(f"'{ref}' is both token {by_id.id}'s id and another token's fingerprint; "
                        "give the token itself")
    token = by_id or by_fingerprint
    if token is None:
        raise NotFound(f"no API token with id or fingerprint {ref}" if len(ref) >= MIN_FINGERPRINT
                       else f"no API token with id {ref}")
    return token


async def _by_fingerprint(prefix: str) -> ApiToken | None:
    matches = await ApiToken.filter(token_hash__startswith=prefix).limit(2)
    if len(matches) > 1:
        raise UserError(f"fingerprint {prefix} matches more than one token; give more digits or the id")
    return matches[0] if matches else None


async def revoke_token(token_id_or_prefix: str | int, *, now: datetime | None = None,
                       actor: str = "") -> tuple[ApiToken, bool]:
    """Revoke a token by id, fingerprint (hash prefix) or plaintext; returns (token, newly revoked).

    Revoking an already revoked token changes nothing."""
    now = now or datetime.now(UTC)
    token = await _find(token_id_or_prefix)
    if token.revoked_at is not None:
        await token.fetch_related("staff")
        return token, False
    async with in_transaction() as conn:
        updated = await ApiToken.filter(id=token.id, revoked_at__isnull=True).using_db(conn).update(revoked_at=now)
        if updated:
            await record([audit_event("token.revoked", now=now, actor=actor, token_id=token.id,
                                      staff_id=token.staff_id, name=token.name,  # type: ignore[attr-defined]
                                      fingerprint=fingerprint(token))], using_db=conn)
    token = await ApiToken.filter(id=token.id).select_related("staff").first()
    assert token is not None
    return token, bool(updated)


async def list_tokens() -> list[ApiToken]:
    """Every token, revoked or not, oldest first, with its staff member loaded."""
    return await ApiToken.all().select_related("staff").order_by("id")


async def expiring_tokens(now: datetime, within: timedelta = EXPIRY_WARNING) -> list[ApiToken]:
    """Tokens still in use (not revoked, their person active) that expire within `within` of
    `now`, soonest first, with their staff member loaded."""
    return await (ApiToken.filter(revoked_at__isnull=True, staff__active=True, expires_at__gt=now,
                                  expires_at__lte=now + within)
                  .select_related("staff").order_by("expires_at", "id"))
