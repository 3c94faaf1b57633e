"""Seeding the fakes cheaply, in-process or over ``POST /_fake/seed``: many workspaces, users and
tenants from a small JSON spec, with deterministic names a benchmark in another process can
rebuild without asking the fake.

A :class:`UserRange` stands for ``count`` users ``<prefix><n zero-padded to width>`` (``n`` from
``start``); the Slack fake answers for them without storing them until one is first looked up.

Generated names (``generated_workspace(i, users)`` / ``generated_tenant(i, users)``), ``i`` from 0:

* Slack workspace ``i``: team ``T<i:04d>BENCH``, bot token ``xoxb-bench-<i:04d>``, users
  ``U<i:04d>N<n:06d>`` with e-mail ``u<i:04d>n<n:06d>@ws<i:04d>.example``;
* Teams tenant ``i``: tenant ``tenant-<i:04d>``, members (AAD ids) ``aad-<i:04d>-<n:06d>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["UserRange", "generated_tenant", "generated_workspace", "slack_seed", "teams_seed"]


@dataclass(frozen=True, slots=True)
class UserRange:
    """``count`` user ids ``prefix + str(n).zfill(width)`` for ``n`` in ``[start, start + count)``;
    with ``email_domain``, user ``X`` has the e-mail ``x.lower() + "@" + email_domain``."""

    prefix: str
    count: int
    start: int = 0
    width: int = 6
    email_domain: str | None = None

    def __post_init__(self) -> None:
        if self.count < 0 or self.start < 0 or self.width < 1 or not self.prefix:
            raise ValueError(f"invalid user range {self!r}")
        if len(str(self.start + self.count - 1)) > self.width and self.count:
            raise ValueError(f"user range {self!r} does not fit its width")

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> UserRange:
        return cls(prefix=str(value["prefix"]), count=int(value["count"]), start=int(value.get("start", 0)),
                   width=int(value.get("width", 6)), email_domain=value.get("email_domain"))

    def user_id(self, n: int) -> str:
        return f"{self.prefix}{n:0{self.width}d}"

    def ids(self) -> list[str]:
        return [self.user_id(n) for n in range(self.start, self.start + self.count)]

    def __contains__(self, user_id: object) -> bool:
        if not isinstance(user_id, str) or len(user_id) != len(self.prefix) + self.width:
            return False
        digits = user_id[len(self.prefix):]
        return user_id.startswith(self.prefix) and digits.isdigit() and \
            self.start <= int(digits) < self.start + self.count

    def email(self, user_id: str) -> str | None:
        return f"{user_id.lower()}@{self.email_domain}" if self.email_domain else None

    def user_for_email(self, email: str) -> str | None:
        if not self.email_domain:
            return None
        local, _, domain = email.strip().lower().rpartition("@")
        if domain != self.email_domain.lower() or not local.startswith(self.prefix.lower()):
            return None
        user_id = self.prefix + local[len(self.prefix):]  # the digits have no case
        return user_id if user_id in self else None


def generated_workspace(i: int, users: int, *, non_marketplace: bool = False) -> dict[str, Any]:
    """The seed spec of generated Slack workspace ``i`` (see the module docstring for names)."""
    return {"team_id": f"T{i:04d}BENCH", "token": f"xoxb-bench-{i:04d}", "bot_user_id": f"UBOT{i:04d}",
            "non_marketplace": non_marketplace,
            "user_range": {"prefix": f"U{i:04d}N", "count": users, "width": 6, "email_domain": f"ws{i:04d}.example"}}


def generated_tenant(i: int, users: int, *, open_conversations: bool = False) -> dict[str, Any]:
    """The seed spec of generated Teams tenant ``i``; ``open_conversations``: its members have the
    bot installed already (their 1:1 conversations exist)."""
    return {"tenant_id": f"tenant-{i:04d}", "open_conversations": open_conversations,
            "user_range": {"prefix": f"aad-{i:04d}-", "count": users, "width": 6}}


def slack_seed(fake: Any, spec: Mapping[str, Any]) -> dict[str, int]:
    """Apply ``{"workspaces": [{"team_id", "token", "bot_user_id"?, "non_marketplace"?, "users"?:
    [{"id", "email"?, "name"?}], "user_range"?: {...}}]}`` to a FakeSlackAPI."""
    counts = {"workspaces": 0, "users": 0}
    for ws in spec.get("workspaces", ()):
        team = str(ws["team_id"])
        fake.add_workspace(team, str(ws["token"]), str(ws.get("bot_user_id", "UBOT")),
                           non_marketplace=bool(ws.get("non_marketplace", False)))
        counts["workspaces"] += 1
        for user in ws.get("users", ()):
            fake.add_user(team, str(user["id"]), email=user.get("email"), name=user.get("name"))
            counts["users"] += 1
        if ws.get("user_range"):
            users = UserRange.parse(ws["user_range"])
            fake.add_user_range(team, users)
            counts["users"] += users.count
    return counts


def teams_seed(fake: Any, spec: Mapping[str, Any]) -> dict[str, int]:
    """Apply ``{"expect_token"?: str, "tenants": [{"tenant_id", "open_conversations"?: bool,
    "users"?: [aad ids], "user_range"?: {...}}], "roster"?: [{"id", "email", "name"?}],
    "blocked"?: [aad ids]}`` to a FakeBotConnector."""
    counts = {"tenants": 0, "conversations": 0, "roster": 0}
    if "expect_token" in spec:
        fake.expect_token(spec["expect_token"])
    for tenant in spec.get("tenants", ()):
        counts["tenants"] += 1
        if not tenant.get("open_conversations"):
            continue
        ids = [str(u) for u in tenant.get("users", ())]
        if tenant.get("user_range"):
            ids += UserRange.parse(tenant["user_range"]).ids()
        for user_id in ids:
            fake.open_conversation(user_id, str(tenant["tenant_id"]))
        counts["conversations"] += len(ids)
    for member in spec.get("roster", ()):
        fake.add_roster_member(str(member["id"]), email=str(member["email"]), name=str(member.get("name", "")))
        counts["roster"] += 1
    for user_id in spec.get("blocked", ()):
        fake.block(str(user_id))
    return counts
