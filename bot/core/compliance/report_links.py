"""Short-lived signed links to a report's CSV (Teams has no file upload for bots in 1:1 chats
without extra permissions, so the bot hands out a link instead)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta

LINK_LIFETIME = timedelta(minutes=15)


def _keys(settings) -> list[bytes]:  # noqa: ANN001
    """The current key's MAC key first (it signs), then the previous keys' (they still verify a
    link handed out before HERALD_SECRET_KEY was rotated)."""
    secret = getattr(settings, "secret_key", None)
    if not secret:
        return []
    raw = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    previous = getattr(settings, "previous_secret_keys", ())
    return [hashlib.sha256(b"herald-report-link:" + key.encode()).digest() for key in (raw, *previous)]


def _token(key: bytes, payload: str) -> str:
    mac = hmac.new(key, payload.encode(), hashlib.sha256).digest()[:18]
    return payload + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def sign(settings, notice_id: int, staff_id: int, expires: int) -> str:  # noqa: ANN001
    keys = _keys(settings)
    return _token(keys[0], f"{notice_id}.{staff_id}.{expires}") if keys else ""


def verify(settings, token: str, *, now: datetime) -> tuple[int, int] | None:  # noqa: ANN001
    """(notice id, staff id) for a valid, unexpired token; None otherwise."""
    try:
        notice_id, staff_id, expires, _ = token.split(".")
        payload = f"{int(notice_id)}.{int(staff_id)}.{int(expires)}"
    except ValueError:
        return None
    # as bytes: compare_digest refuses str holding non-ASCII (a forged link would be a 500)
    genuine = any(hmac.compare_digest(_token(key, payload).encode(), token.encode()) for key in _keys(settings))
    if not genuine or int(expires) < now.timestamp():
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
