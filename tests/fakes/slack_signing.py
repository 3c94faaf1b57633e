"""Build and sign inbound Slack requests (slash commands, interactions, events) as Slack does.

Slack's v0 scheme: ``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:{timestamp}:{body}")>``
with ``X-Slack-Request-Timestamp: {timestamp}``. Tests pass ``timestamp`` explicitly when they
control time; it defaults to ``int(time.time())``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "FORM_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "sign",
    "signed_headers",
    "slash_command_body",
    "interaction_body",
    "event_body",
    "url_verification_body",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_CONTENT_TYPE = "application/json"

_ids = itertools.count(1)


def sign(secret: str, body: str | bytes, timestamp: int | str) -> str:
    """The ``X-Slack-Signature`` value (``v0=<hex>``) for ``body`` sent at ``timestamp``."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    base = f"v0:{timestamp}:{body}".encode("utf-8")
    return "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()


def signed_headers(
    secret: str,
    body: str | bytes,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
) -> dict[str, str]:
    """Headers Slack sends with ``body``: timestamp, v0 signature and content type.

    The content type is guessed from the body (JSON when it starts with ``{``, else form)
    unless ``content_type`` is given.
    """
    if timestamp is None:
        timestamp = int(time.time())
    if content_type is None:
        head = body[:1] if isinstance(body, str) else body[:1].decode("ascii", "replace")
        content_type = JSON_CONTENT_TYPE if head == "{" else FORM_CONTENT_TYPE
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sign(secret, body, timestamp),
    }


def _next_id() -> int:
    return next(_ids)


def slash_command_body(**fields: Any) -> str:
    """A form-encoded slash-command body; ``fields`` override the defaults, ``None`` drops a field.

    Defaults: command="/herald", text="", team_id="T1", team_domain, channel_id="C1",
    channel_name, user_id="U1", user_name, api_app_id="AHERALD", is_enterprise_install="false",
    trigger_id (unique), response_url="https://hooks.slack.com/commands/T1/1/x" (pass
    ``fake.response_url(key)`` to capture responses), token="verification-token".
    """
    n = _next_id()
    team_id = fields.get("team_id") or "T1"
    body: dict[str, Any] = {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": team_id.lower(),
        "channel_id": "C1",
        "channel_name": "general",
        "user_id": "U1",
        "user_name": (fields.get("user_id") or "U1").lower(),
        "command": "/herald",
        "text": "",
        "api_app_id": "AHERALD",
        "is_enterprise_install": "false",
        "response_url": f"https://hooks.slack.com/commands/{team_id}/{n}/x",
        "trigger_id": f"{n}.{n}.trigger{n:06d}",
    }
    body.update(fields)
    return urlencode({k: _form_value(v) for k, v in body.items() if v is not None})


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def interaction_body(payload: dict[str, Any]) -> str:
    """A form-encoded interactivity body: ``payload=<json>``."""
    return urlencode({"payload": json.dumps(payload)})


def event_body(
    event: dict[str, Any],
    team_id: str,
    *,
    event_id: str | None = None,
    event_time: int | None = None,
    api_app_id: str = "AHERALD",
    bot_user_id: str = "UBOT",
    **extra: Any,
) -> str:
    """A JSON ``event_callback`` envelope around ``event`` with a unique ``event_id``."""
    n = _next_id()
    envelope: dict[str, Any] = {
        "token": "verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{n:010d}",
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{team_id}-{n}",
    }
    envelope.update(extra)
    return json.dumps(envelope)


def url_verification_body(challenge: str = "challenge-token") -> str:
    """The JSON body of Slack's Events API ``url_verification`` handshake."""
    return json.dumps({"token": "verification-token", "challenge": challenge, "type": "url_verification"})
