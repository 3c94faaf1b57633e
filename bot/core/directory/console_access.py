"""Who may use the console, and for how long: single-use sign-in links and sessions.

A staff member asks for a link in chat (`/herald console`, `console` in Teams) or an operator
prints one (`herald console-link EMAIL`). The link carries a random token that works once, for
ten minutes; redeeming it opens a session of eight hours. Only SHA-256 digests of both tokens
are stored (the tokens are random 256-bit values, so a fast hash is enough), so a copy of the
database opens nothing. Who may sign in is decided by the same rule as chat's status command
(`permissions.require_viewer`): CAMs, compliance officers and admins, never partners. Every
sign-in, link and sign-out is on the audit trail.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.transactions import in_transaction

from bot.common.errors import PermissionDenied, UserError
from bot.core.compliance.audit import audit_event, record
from bot.core.directory.permissions import require_viewer
from storage.models import ConsoleSession, ConsoleSignIn, Member, Staff

LINK_LIFETIME = timedelta(minutes=10)
SESSION_LIFETIME = timedelta(hours=8)
LINK_PREFIX = "hcl_"
MAX_TOKEN_LENGTH = 200
NO_ACCESS = "Only Herald staff (CAMs, compliance officers and admins) can use the console."


class SignInRefused(UserError):
    """The link is unknown, used or expired, or its owner may no longer sign in."""


@dataclass(frozen=True)
class SignInLink:
    token: str  # shown once, in the link; never stored
    staff: Staff
    expires_at: datetime


@dataclass(frozen=True)
class OpenSession:
    token: str  # for the browser's cookie; never stored
    staff: Staff
    expires_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _may_sign_in(staff: Staff | None) -> Staff:
    try:
        return require_viewer(staff)
    except PermissionDenied:
        raise PermissionDenied(NO_ACCESS) from None


async def issue_link(staff: Staff | None, *, via: str, now: datetime, actor: str = "") -> SignInLink:
    """A new single-use link for this staff member (chat: the sender; CLI: the operator's pick)."""
    staff = _may_sign_in(staff)
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    expires = now + LINK_LIFETIME
    async with in_transaction() as conn:
        row = await ConsoleSignIn.create(staff=staff, token_hash=digest(token), issued_via=via[:20],
                                         created_at=now, expires_at=expires, using_db=conn)
        await record([audit_event("console.link_issued", now=now, actor=actor or staff.email, staff_id=staff.id,
                                  email=staff.email, via=via, link_id=row.id, expires_at=expires)], using_db=conn)
    return SignInLink(token, staff, expires)


async def issue_link_for_email(email: str, *, via: str, now: datetime, actor: str) -> SignInLink:
    """For the command line: the staff member by e-mail."""
    address = (email or "").strip().lower()
    staff = await Staff.get_or_none(email=address)
    if staff is None:
        if await Member.filter(email=address).exists():
            raise UserError(f"'{address}' is a partner member, not vendor staff: the console is for CAMs, compliance "
                            f"and admins (partners use Herald in Slack or Teams, or the sandbox's inboxes)")
        raise UserError(f"no staff member with e-mail '{address}'; add them with `herald staff add` first")
    return await issue_link(staff, via=via, now=now, actor=actor)


async def redeem_link(token: str, *, now: datetime) -> OpenSession:
    """Use a link once: it opens a session, or raises `SignInRefused` with the reason in words."""
    token = (token or "").strip()
    if not token.startswith(LINK_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise SignInRefused("This sign-in link is not valid. Ask Herald for a new one (`/herald console`).")
    hashed = digest(token)
    link = await ConsoleSignIn.get_or_none(token_hash=hashed).select_related("staff")
    if link is None:
        raise SignInRefused("This sign-in link is not valid. Ask Herald for a new one (`/herald console`).")
    if link.used_at is not None:
        raise SignInRefused("This sign-in link was already used; each link works once. Ask Herald for a new one.")
    if link.expires_at <= now:
        raise SignInRefused("This sign-in link has expired (links work for 10 minutes). Ask Herald for a new one.")
    try:
        staff = _may_sign_in(link.staff)
    except PermissionDenied as exc:
        raise SignInRefused(str(exc)) from None
    session_token = secrets.token_urlsafe(32)
    expires = now + SESSION_LIFETIME
    async with in_transaction() as conn:
        # the conditional update makes the link single-use even when two clicks race
        claimed = await ConsoleSignIn.filter(id=link.id, used_at__isnull=True).using_db(conn).update(used_at=now)
        if not claimed:
            raise SignInRefused("This sign-in link was already used; each link works once. Ask Herald for a new one.")
        session = await ConsoleSession.create(staff=staff, token_hash=digest(session_token), created_at=now,
                                              expires_at=expires, using_db=conn)
        await record([audit_event("console.signed_in", now=now, actor=staff.email, staff_id=staff.id,
                                  link_id=link.id, session_id=session.id)], using_db=conn)
    return OpenSession(session_token, staff, expires)


async def session_staff(token: str | None, *, now: datetime) -> tuple[ConsoleSession, Staff] | None:
    """The open session and its staff member for a cookie's token, if it is valid now (the
    staff member must still be active with a console role)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    session = await ConsoleSession.filter(token_hash=digest(token), ended_at__isnull=True,
                                          expires_at__gt=now).select_related("staff").first()
    if session is None:
        return None
    try:
        return session, _may_sign_in(session.staff)
    except PermissionDenied:
        return None


async def end_session(session: ConsoleSession, *, now: datetime) -> None:
    """Sign out: every console session of that staff member (another browser, a lost laptop) stops
    working at once, on every replica."""
    async with in_transaction() as conn:
        ended = await ConsoleSession.filter(staff_id=session.staff.id, ended_at__isnull=True).using_db(conn).update(
            ended_at=now)
        if ended:
            await record([audit_event("console.signed_out", now=now, actor=session.staff.email,
                                      staff_id=session.staff.id, session_id=session.id, sessions_ended=ended)],
                         using_db=conn)
