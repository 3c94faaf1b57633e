"""``/_fake/...`` HTTP routes: drive a fake that runs in another process (a benchmark's).

Both fakes:

* ``GET  /_fake/stats`` -- ``limits_stats()`` plus ``requests`` (received per method/route);
* ``POST /_fake/stats/reset`` -- zero the limits counters;
* ``POST /_fake/limits`` -- ``{"enabled": false}`` turns limits mode off; ``{"enabled": true, ...}``
  turns it on with the documented figures overridden by the other keys (``SlackLimits.from_dict``
  / ``TeamsLimits.from_dict``: ``scale``, rates as ``{"count", "per", "burst"}`` ...);
* ``POST /_fake/seed`` -- ``tests.fakes.seeding.slack_seed`` / ``teams_seed`` specs.

Slack: ``GET /_fake/messages[?channel=D...][&event_type=herald_notice][&full=1]`` lists stored
messages as ``{"channel", "ts", "thread_ts", "text", "metadata"}`` (``full=1``: the whole message).
Bot Connector: ``GET /_fake/activities[?conversation=...][&full=1]`` lists stored activities as
``{"conversation_id", "tenant_id", "user_id", "id", "replyToId", "edited", "text"}``.

These routes are the fakes' own: never rate limited, never recorded in ``calls``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.seeding import slack_seed, teams_seed
from tests.fakes.slack_limits import SlackLimits
from tests.fakes.teams_limits import TeamsLimits

__all__ = ["add_connector_routes", "add_slack_routes"]

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    data = json.loads(raw) if raw else {}
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _guarded(handler: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    """JSON in, JSON out; a bad body answers 400 with the reason instead of a traceback."""
    async def wrapped(request: web.Request) -> web.Response:
        try:
            result = await handler(request)
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"ok": False, "error": f"{type(exc).__name__}: {exc}"}, status=400)
        return web.json_response({"ok": True, **result} if isinstance(result, dict) else result)
    return wrapped


def _common(app: web.Application, fake: Any, limits_type: type, seed: Callable[[Any, dict[str, Any]], dict[str, int]],
            requests: Callable[[], dict[str, int]]) -> None:
    async def stats(_: web.Request) -> dict[str, Any]:
        return {**fake.limits_stats(), "requests": requests()}

    async def reset(_: web.Request) -> dict[str, Any]:
        fake.reset_limits_stats()
        return {}

    async def limits(request: web.Request) -> dict[str, Any]:
        data = await _body(request)
        enabled = bool(data.pop("enabled", True))
        fake.set_limits(limits_type.from_dict(data) if enabled else None)
        return {"limits": None if fake.limits is None else fake.limits.as_dict()}

    async def seeded(request: web.Request) -> dict[str, Any]:
        return {"seeded": seed(fake, await _body(request))}

    app.router.add_get("/_fake/stats", _guarded(stats))
    app.router.add_post("/_fake/stats/reset", _guarded(reset))
    app.router.add_post("/_fake/limits", _guarded(limits))
    app.router.add_post("/_fake/seed", _guarded(seeded))


def add_slack_routes(app: web.Application, fake: Any) -> None:
    """The control routes of a FakeSlackAPI."""
    _common(app, fake, SlackLimits, slack_seed, fake.request_counts)

    async def messages(request: web.Request) -> dict[str, Any]:
        only, event_type = request.query.get("channel"), request.query.get("event_type")
        full = request.query.get("full") in ("1", "true")
        channels = [only] if only else fake.channels()
        out = []
        for channel in channels:
            for message in fake.messages(channel):
                metadata = message.get("metadata")
                if event_type and (metadata or {}).get("event_type") != event_type:
                    continue
                out.append({"channel": channel, **message} if full else
                           {"channel": channel, "ts": message["ts"], "thread_ts": message.get("thread_ts"),
                            "text": message.get("text", ""), "metadata": metadata})
        return {"messages": out}

    app.router.add_get("/_fake/messages", _guarded(messages))


def add_connector_routes(app: web.Application, fake: Any) -> None:
    """The control routes of a FakeBotConnector."""
    _common(app, fake, TeamsLimits, teams_seed, lambda: dict(fake.route_counts))

    async def activities(request: web.Request) -> dict[str, Any]:
        only = request.query.get("conversation")
        full = request.query.get("full") in ("1", "true")
        conversations = [only] if only else fake.conversations()
        out = []
        for conversation_id in conversations:
            party = fake.conversation_party(conversation_id)
            if party is None:
                continue
            for activity in fake.activities(conversation_id):
                head = {"conversation_id": conversation_id, "tenant_id": party[0], "user_id": party[1]}
                out.append({**head, **activity} if full else
                           {**head, "id": activity["id"], "replyToId": activity.get("replyToId"),
                            "edited": bool(activity.get("edited")), "text": activity.get("text")})
        return {"activities": out}

    app.router.add_get("/_fake/activities", _guarded(activities))
