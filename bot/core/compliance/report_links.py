"""Short-lived signed links to a report's CSV (Teams has no file upload for bots in 1:1 chats
without extra permissions, so the bot hands out a link instead)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

LINK_LIFETIME = timedelta(minutes=15)


def _key(settings) -> bytes | None:  # noqa: ANN001
    secret = getattr(settings, "secret_key", None)
    if not secret:
        return None
    raw = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return hashlib.sha256(b"herald-report-link:" + raw.encode()).digest()


def sign(settings, notice_id: int, staff_id: int, expires: int) -> str:  # noqa: ANN001
    key = _key(settings)
    if key is None:
        return ""
    payload = f"{notice_id}.{staff_id}.{expires}"
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:18]
    return payload + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def verify(settings, token: str, *, now: datetime) -> tuple[int, int] | None:  # noqa: ANN001
    """(notice id, staff id) for a valid, unexpired token; None otherwise."""
    try:
        notice_id, staff_id, expires, _ = token.split(".")
        expected = sign(settings, int(notice_id), int(staff_id), int(expires))
    except ValueError:
        return None
    # as bytes: compare_digest refuses str holding non-ASCII (a forged link would be a 500)
    if not expected or not hmac.compare_digest(expected.encode(), token.encode()) or int(expires) < now.timestamp():
        return None
    return int(notice_id), int(staff_id)


def signed_report_url(settings, notice_id: int, staff_id: int, *, now: datetime) -> str:  # noqa: ANN001
    base = getattr(settings, "public_url", None)
    if not base:
        return ""
    token = sign(settings, notice_id, staff_id, int((now + LINK_LIFETIME).timestamp()))
    if not token:
        return ""
    return f"{str(base).rstrip('/')}/reports/download?token={token}"
