"""The outbound channel protocol: what the delivery engine needs from Slack or Teams."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bot.core.notices.views import NoticeView

# What a copy or message that waits because the platform refused Herald's own credentials says
# (its error while pending; a restart makes those due at once: bot.core.delivery.credentials).
CREDENTIALS_REFUSED = "waiting for Herald's credentials to work again: "


@dataclass(frozen=True)
class Recipient:
    """Where a member is reached on one platform (from their PlatformAccount)."""

    workspace_id: str  # Slack team id / Teams tenant id
    user_id: str  # Slack user id / Teams AAD object id
    dm_channel: str = ""  # cached DM conversation, if known
    service_url: str = ""  # Teams only
    display_name: str = ""
    thread_id: str = ""  # post as a reply in this thread (Slack: the parent message's ts); Teams: unused


@dataclass(frozen=True)
class MessageRef:
    channel_id: str
    message_id: str


class OutcomeKind(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DEFERRED = "deferred"  # not attempted (the workspace is paused by a rate limit); no attempt counted


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    ref: MessageRef | None = None
    dm_channel: str = ""  # a newly opened DM conversation for the engine to cache
    # Teams: the service URL `dm_channel` was opened on, cached with it. Later updates of the
    # messages sent there (edits, retractions, acknowledgements) need it, in any process.
    service_url: str = ""
    reason: str = ""
    retry_after: float | None = None  # seconds the platform asked us to wait
    throttled: bool = False  # the whole workspace/tenant is rate-limited, not just this message
    # A 429 that limits this kind of request alone (Slack's limits are per method per workspace):
    # the engine holds back that kind only, and the lane's other requests go on.
    method_only: bool = False
    # A retry whose request may have reached the platform (its answer was lost: a timeout, a 5xx):
    # the next attempt looks for the earlier message before sending again, as after a crash.
    in_doubt: bool = False
    # The channel looked for an earlier attempt's message and it is not there: nothing was posted.
    looked: bool = False
    # A look cut short by the rate limit: where the next one goes on (`deliver(read_to=...)`), stored
    # with the copy so any process resumes it. "": nothing read beyond where this look began.
    read_to: str = ""
    # The platform refused Herald's credentials for the whole workspace for good (Slack: the app
    # was removed, its token revoked): the code it answered. The engine deactivates the workspace
    # as the uninstall event does (bot.core.directory.workspaces.workspace_refused).
    removed_cause: str = ""
    token_fingerprint: str = ""  # of the refused token (a workspace reconnected since is left alone)
    # The platform refused Herald's own credentials (Teams: Entra ID refused the client secret, or
    # the Bot Connector refused Herald's token): nothing can go out on the platform, whoever it is
    # for. Not an attempt of the copy: the engine pauses the platform's lanes and tries again later.
    credentials_refused: bool = False
    # The platform said the member removed Herald (Teams: 403 BotNotInConversationRoster in a chat
    # it had): (tenant, user id). The engine records the removal as the platform's own event does
    # (bot.core.directory.app_installs.app_removed), which it may have missed.
    app_removed_by: tuple[str, str] | None = None

    @classmethod
    def delivered(cls, ref: MessageRef, dm_channel: str = "") -> "Outcome":
        return cls(OutcomeKind.DELIVERED, ref=ref, dm_channel=dm_channel)

    @classmethod
    def retry(cls, reason: str, *, retry_after: float | None = None, throttled: bool = False,
              dm_channel: str = "", in_doubt: bool = False, method_only: bool = False) -> "Outcome":
        return cls(OutcomeKind.RETRY, reason=reason, retry_after=retry_after, throttled=throttled,
                   dm_channel=dm_channel, in_doubt=in_doubt, method_only=method_only)

    @classmethod
    def deferred(cls, seconds: float, *, in_doubt: bool = False, read_to: str = "") -> "Outcome":
        return cls(OutcomeKind.DEFERRED, reason="waiting for the workspace's rate limit", retry_after=seconds,
                   in_doubt=in_doubt, read_to=read_to)

    @classmethod
    def not_posted(cls, dm_channel: str = "") -> "Outcome":
        """An unwanted copy in doubt (`deliver(..., wanted=False)`) that the channel looked for and
        did not find: no attempt counted, and the engine cancels it."""
        return cls(OutcomeKind.DEFERRED, reason="not wanted any more", retry_after=0, dm_channel=dm_channel,
                   looked=True)

    @classmethod
    def refused_credentials(cls, reason: str, *, dm_channel: str = "") -> "Outcome":
        """Not sent because the platform refused Herald's own credentials (see `credentials_refused`):
        pending again, no attempt counted, saying why it waits."""
        return cls(OutcomeKind.DEFERRED, reason=CREDENTIALS_REFUSED + reason, dm_channel=dm_channel,
                   credentials_refused=True)

    @classmethod
    def failed(cls, reason: str, dm_channel: str = "") -> "Outcome":
        return cls(OutcomeKind.FAILED, reason=reason, dm_channel=dm_channel)

    @classmethod
    def removed(cls, cause: str, reason: str, *, token_fingerprint: str, dm_channel: str = "") -> "Outcome":
        """Failed because Herald can no longer act in the workspace at all (see `removed_cause`)."""
        return cls(OutcomeKind.FAILED, reason=reason, dm_channel=dm_channel, removed_cause=cause,
                   token_fingerprint=token_fingerprint)


@dataclass(frozen=True)
class Button:
    label: str
    action_id: str
    value: str
    style: str = ""  # "primary" / "danger" / ""


@dataclass(frozen=True)
class DirectMessage:
    """A plain message to one person (escalations, hand-offs): renderers escape every line."""

    title: str
    lines: tuple[str, ...]
    buttons: tuple[Button, ...] = ()


class RateLimited(Exception):
    """A channel's `update` hit a rate limit (HTTP 429): the update stays pending, due again after
    `retry_after` seconds. `method_only`: the limit is the update method's own (Slack: per method
    per workspace), so the engine holds back the workspace's updates only; otherwise (Teams: one
    limit per tenant for every request) it pauses the whole lane."""

    def __init__(self, retry_after: float | None, reason: str = "rate limited", *, method_only: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.method_only = method_only


class CredentialsRefused(Exception):
    """A channel's call was refused because the platform refused Herald's own credentials (not
    the message's fault): an update stays pending and the engine pauses the platform's lanes."""


class UpdateRefused(Exception):
    """A channel's `update` was refused for good (the message or conversation is gone, Herald was
    removed or blocked, the card is too large): the engine stops trying and records why.

    `removed_cause` / `token_fingerprint`: as on `Outcome` (the platform refused Herald's token for
    the whole workspace), so the engine deactivates the workspace as after a refused send."""

    def __init__(self, reason: str, *, removed_cause: str = "", token_fingerprint: str = "") -> None:
        super().__init__(reason)
        self.removed_cause = removed_cause
        self.token_fingerprint = token_fingerprint


class Channel(Protocol):
    platform: str

    async def deliver(self, recipient: Recipient, view: NoticeView, *, delivery_id: int,
                      maybe_sent: bool, wanted: bool = True, since: datetime | None = None,
                      read_to: str = "") -> Outcome:
        """Send one notice to one person. `maybe_sent`: an earlier attempt may have gone out
        before a crash; the channel must look for it before sending again. `wanted=False` (only
        with `maybe_sent`): the notice was retracted, its survey closed, the reminder
        acknowledged, or the member left its topic, since; report the earlier message if it is there (the engine updates it),
        else send nothing (`Outcome.not_posted`). A channel that cannot look sends as usual.
        `since` (with `maybe_sent`): when the first attempt that may have posted it began (None:
        unknown); an earlier message can only be newer, so a look need not read further back.
        `read_to`: where an earlier look for it stopped (its `Outcome.read_to`): everything newer
        was read, so this one goes on from there."""

    async def update(self, workspace_id: str, ref: MessageRef, view: NoticeView) -> None:
        """Replace a delivered message in place (e.g. after an acknowledgement)."""

    async def send_message(self, recipient: Recipient, message: DirectMessage) -> Outcome:
        """Send a plain direct message (no notice) to one person."""

    async def close(self) -> None: ...
