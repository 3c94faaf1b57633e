"""Tortoise models: the database is the source of truth for every notice, delivery and click."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

MAX_ROW_ID = 2**31 - 1  # integer primary keys are 32-bit in PostgreSQL: a larger id is no row, not a query



class Platform(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    SANDBOX = "sandbox"  # the console's sandbox: messages shown in a browser inbox, nothing leaves Herald


class StaffRole(StrEnum):
    CAM = "cam"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


class NoticeStatus(StrEnum):
    DRAFT = "draft"
    CANCELLED = "cancelled"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    RETRACTED = "retracted"
    FAILED = "failed"  # a scheduled notice that could not be published at its time (see failure_reason)


class DeliveryKind(StrEnum):
    NOTICE = "notice"      # the notice itself
    REMINDER = "reminder"  # a reminder to acknowledge it (sequence 1, 2, ...)


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # written, waiting for a worker
    SENDING = "sending"      # claimed by a worker under a lease
    DELIVERED = "delivered"  # the platform accepted it; message ref stored
    FAILED = "failed"        # gave up; `error` says why in words a person can act on
    DIGEST = "digest"        # nice-to-know: kept for the member's digest, never DM'd alone
    CANCELLED = "cancelled"  # not sent: the notice was retracted or the reminder became moot
    HELD = "held"            # A/B test: kept back from the first share until a variant is rolled out


class UnreachedReason(StrEnum):
    """Why an organisation the audience matched got no copy of a notice (`Notice.unreached_organisations`)."""

    NO_ACTIVE_MEMBER = "no_active_member"  # nobody active in the directory (e.g. the contact left)
    NOT_IN_AUDIENCE = "not_in_audience"    # active members, none with the audience's roles or e-mails
    OPTED_OUT = "opted_out"                # every member in the audience left the topic


# Rows still to be sent (delivery, outbound_message); the outbox's partial indexes say the same
# (migration 0011, bot.core.delivery.lanes.OPEN).
OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)


class Organisation(Model):
    id = fields.IntField(primary_key=True)
    external_id = fields.CharField(max_length=100, unique=True)
    name = fields.CharField(max_length=200)
    tier = fields.CharField(max_length=50, default="")
    region = fields.CharField(max_length=50, default="")
    country = fields.CharField(max_length=50, default="")
    industry = fields.CharField(max_length=100, default="")
    size = fields.CharField(max_length=50, default="")
    partner_type = fields.CharField(max_length=50, default="")
    cam_email = fields.CharField(max_length=254, default="")
    # A CAM may pause automated reminders and nudges while the partner handles an emergency.
    paused_at = fields.DatetimeField(null=True)  # set while paused
    paused_until = fields.DatetimeField(null=True)  # None while paused = until resumed
    pause_reason = fields.CharField(max_length=500, default="")
    paused_by = fields.CharField(max_length=254, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "organisation"


class Member(Model):
    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="members", on_delete=fields.CASCADE
    )
    email = fields.CharField(max_length=254)
    name = fields.CharField(max_length=200, default="")
    role = fields.CharField(max_length=50)
    timezone = fields.CharField(max_length=64, default="UTC")
    # The member chose `timezone` in their preferences: a directory import no longer changes it.
    timezone_chosen = fields.BooleanField(default=False)
    # A directory import gave `timezone` (a non-blank cell): the zone a platform reports for the
    # member's device (Teams' clientInfo) no longer replaces it. Neither flag set: it may.
    timezone_from_directory = fields.BooleanField(default=False)
    locale = fields.CharField(max_length=20, default="")
    # Quiet hours in the member's time zone, as hours of the day; None = the defaults.
    quiet_start_hour = fields.SmallIntField(null=True)
    quiet_end_hour = fields.SmallIntField(null=True)
    preferred_platform = fields.CharField(max_length=10, default="")  # "" = the first one on file
    digest_frequency = fields.CharField(max_length=10, default="daily")  # daily | weekly
    topic_opt_outs = fields.JSONField(default=list)  # topic keys (only topics that allow opting out)
    active = fields.BooleanField(default=True)
    joined_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "member"
        unique_together = (("organisation", "email"),)
        indexes = (("active", "role", "organisation_id"),)  # the engagement page's members per role


class Workspace(Model):
    """A Slack workspace (team) or Teams tenant Herald is installed in."""

    id = fields.IntField(primary_key=True)
    platform = fields.CharField(max_length=10)
    external_id = fields.CharField(max_length=100)
    name = fields.CharField(max_length=200, default="")
    bot_token = fields.TextField(default="")
    bot_user_id = fields.CharField(max_length=50, default="")
    active = fields.BooleanField(default=True)
    # Slack token rotation: the bot token expires then; the refresh token (sealed like the bot
    # token) gets the next pair; one replica at a time refreshes, holding the lease below.
    token_expires_at = fields.DatetimeField(null=True)
    refresh_token = fields.TextField(default="")
    refresh_claimed_by = fields.CharField(max_length=64, default="")
    refresh_claimed_until = fields.DatetimeField(null=True)
    # A hash of the bot token in use (bot.common.secrets.token_fingerprint), never the token: on an
    # active row, the stored token's (a refusal of an older token does not deactivate a workspace
    # reconnected since); on an inactive row, the removed token's, so a new HERALD_SLACK_BOT_TOKEN
    # is told from the revoked one. "" when unknown (rows stored before it was kept).
    token_fingerprint = fields.CharField(max_length=64, default="")
    # When the installation whose token the row holds was stored ("Add to Slack", add-workspace):
    # a removal event Slack retries late (or out of order) from before it is ignored. None: unknown.
    installed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "workspace"
        unique_together = (("platform", "external_id"),)


class SlackOrgTeam(Model):
    """A workspace (team, T...) of an Enterprise Grid organisation that the org-wide install under
    `enterprise_id` (a Workspace row E...) was granted access to: learnt from auth.teams.list at
    the install and from the team_access_granted / team_access_revoked events. A directory entry
    naming the workspace is served with the org's token and lane."""

    id = fields.IntField(primary_key=True)
    team_id = fields.CharField(max_length=100, unique=True)
    enterprise_id = fields.CharField(max_length=100, db_index=True)
    name = fields.CharField(max_length=200, default="")
    granted_at = fields.DatetimeField()

    class Meta:
        table = "slack_org_team"


class PlatformAccount(Model):
    """A directory member's identity on one platform, with the cached DM conversation."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="accounts", on_delete=fields.CASCADE
    )
    platform = fields.CharField(max_length=10)
    workspace_external_id = fields.CharField(max_length=100)  # Slack team id / Teams tenant id
    user_id = fields.CharField(max_length=100)  # Slack user id / Teams AAD object id
    dm_channel = fields.CharField(max_length=200, default="")  # Slack DM id / Teams conversation id
    service_url = fields.CharField(max_length=500, default="")  # Teams only
    # Teams: when the member removed Herald (installationUpdate "remove"); None while it is installed
    app_removed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "platform_account"
        unique_together = (("platform", "workspace_external_id", "user_id"),)
        indexes = (("member_id",),)  # a member's accounts: journey steps, digests, hand-offs, the directory


class Staff(Model):
    """Vendor staff: CAMs, compliance officers and admins."""

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)
    name = fields.CharField(max_length=200, default="")
    role = fields.CharField(max_length=20)
    slack_team_id = fields.CharField(max_length=100, default="")
    slack_user_id = fields.CharField(max_length=100, default="")
    teams_aad_object_id = fields.CharField(max_length=100, default="")
    # Stored when the staff member first talks to Herald in Teams, for escalations and hand-offs.
    teams_tenant_id = fields.CharField(max_length=100, default="")
    teams_conversation_id = fields.CharField(max_length=200, default="")
    teams_service_url = fields.CharField(max_length=500, default="")
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "staff"


class Notice(Model):
    id = fields.IntField(primary_key=True)
    topic = fields.CharField(max_length=50)
    importance = fields.CharField(max_length=20)
    title = fields.CharField(max_length=200)
    body = fields.TextField()
    link = fields.CharField(max_length=1000, default="")
    deadline = fields.DatetimeField(null=True)
    audience = fields.TextField()
    author: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="notices", null=True, on_delete=fields.SET_NULL
    )
    status = fields.CharField(max_length=20, default=NoticeStatus.DRAFT.value)
    revision = fields.IntField(default=1)
    # The revision whose acknowledgement counts: raised by a material edit of a must-know notice.
    ack_revision = fields.IntField(default=1)
    recipient_count = fields.IntField(default=0)
    reminder_hours = fields.JSONField(null=True)  # per-notice override of the topic's schedule
    scheduled_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    escalated_at = fields.DatetimeField(null=True)
    retracted_at = fields.DatetimeField(null=True)
    retract_reason = fields.CharField(max_length=500, default="")
    failure_reason = fields.CharField(max_length=500, default="")  # why a scheduled notice was not published
    # Written when it is sent: the organisations the audience matched that got no copy, as
    # {UnreachedReason: [organisation id, ...]} (null: sent before migration 0021, not known).
    unreached_organisations = fields.JSONField(null=True)

    class Meta:
        table = "notice"
        # an author's recent notices: `herald send`'s check for a retried command (migration 0035)
        indexes = (("status", "scheduled_at"), ("author_id", "created_at"))


class NoticeRevision(Model):
    """Each edit of a sent notice: who, when, what changed."""

    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="revisions", on_delete=fields.CASCADE
    )
    revision = fields.IntField()
    title = fields.CharField(max_length=200)
    body = fields.TextField()
    link = fields.CharField(max_length=1000, default="")
    material = fields.BooleanField(default=False)
    edited_by = fields.CharField(max_length=254, default="")
    edited_at = fields.DatetimeField()
    diff = fields.TextField(default="")

    class Meta:
        table = "notice_revision"
        unique_together = (("notice", "revision"),)


class _DueSince:
    """A queued outbox row is due from its first `next_attempt_at`: `create()` (and `save()` of a
    new row) fills `due_since` from it when the writer did not say. Bulk and raw inserts set it
    themselves; so does every statement that queues a row again."""

    async def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._saved_in_db and self.due_since is None:  # type: ignore[attr-defined]
            self.due_since = self.next_attempt_at  # type: ignore[attr-defined]
        await super().save(*args, **kwargs)  # type: ignore[misc]


class Delivery(_DueSince, Model):
    """The outbox: one row per recipient per platform, written before anything is sent."""

    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="deliveries", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="deliveries", on_delete=fields.CASCADE
    )
    platform = fields.CharField(max_length=10)
    kind = fields.CharField(max_length=10, default=DeliveryKind.NOTICE.value)
    sequence = fields.IntField(default=0)  # reminders: 1, 2, ...
    account: fields.ForeignKeyNullableRelation[PlatformAccount] = fields.ForeignKeyField(
        "models.PlatformAccount", related_name="deliveries", null=True, on_delete=fields.SET_NULL
    )
    workspace_external_id = fields.CharField(max_length=100, default="")
    status = fields.CharField(max_length=20, default=DeliveryStatus.PENDING.value)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    # When the row became due to be sent (see `_DueSince`): queued, or queued again (a requeue, a
    # roll-out, a hold until quiet hours end); retries and deferrals move only next_attempt_at.
    # Read by herald_outbox_oldest_due_age_seconds (migration 0034; null on rows closed before it).
    due_since = fields.DatetimeField(null=True)
    # "<worker>:<turn>" while in flight, else "". Partial index on the claimed rows (migration
    # 0029, plain SQL: the ORM cannot say WHERE or COLLATE), for the heartbeat's renewals.
    claimed_by = fields.CharField(max_length=64, default="")
    claimed_until = fields.DatetimeField(null=True)
    channel_id = fields.CharField(max_length=200, default="")
    message_id = fields.CharField(max_length=200, default="")  # Slack ts / Teams activity id
    error = fields.TextField(default="")
    delivered_at = fields.DatetimeField(null=True)
    # The notice revision the delivered message shows; lower than the notice's = update pending.
    rendered_revision = fields.IntField(default=1)
    # The delivered message must be re-rendered (edit, retraction, acknowledgement): the intent is
    # written with the state change; the outbox pushes the update and clears the flag.
    update_pending = fields.BooleanField(default=False, db_index=True)
    # Raised by one with every flag: an update's outcome clears `update_pending` only if no flag came
    # while it was in flight (a retraction during an edit's update must still reach the message).
    update_seq = fields.IntField(default=0)
    # Original must-know deliveries: when the next reminder is due (None = none due).
    next_reminder_at = fields.DatetimeField(null=True)
    reminders_sent = fields.IntField(default=0)
    # When the send that may have posted this copy was first claimed (set by the claim of a pending
    # row, kept while the row is in doubt): a copy in doubt is looked for in the conversation's
    # history from just before then (SlackChannel._find_earlier_send). Null: never claimed since
    # migration 0027.
    send_started_at = fields.DatetimeField(null=True)
    # Where that look goes on (Slack: the ts of the oldest message it read) when the rate limit cut
    # it short: stored with the copy, so the replica that takes the lane next, or Herald after a
    # restart, reads on from there instead of from the newest message. "" = start from the newest
    # (none yet, or the look concluded). Migration 0028.
    history_read_to = fields.CharField(max_length=32, default="")
    # A/B test: the variant ("A" to "D") this member sees; "" = the notice has no variants. One
    # delivery row per member and platform (the unique key below), so nobody sees two variants.
    variant = fields.CharField(max_length=1, default="")
    # A/B test: this original copy was held back from the first share and sent the winner by the
    # rollout. Its member was never in the experiment: the comparison leaves it out and shows the
    # rollout apart (migration 0022 marks the copies rolled out before it).
    rolled_out = fields.BooleanField(default=False)
    # The member's organisation, copied so the console's per-organisation counts read it from an
    # index (migration 0010). A member never changes organisation (the directory keys members by
    # organisation and e-mail), so the copy cannot go stale. Null only on rows written without it:
    # readers fall back to the member's.
    organisation_id = fields.IntField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "delivery"
        unique_together = (("notice", "member", "platform", "kind", "sequence"),)
        # the last one covers the console's per-notice counts and timeline (bench/console.py)
        indexes = (("status", "next_attempt_at"), ("next_reminder_at",),
                   ("notice_id", "kind", "status", "delivered_at", "member_id"), ("status", "claimed_until"),
                   ("notice_id", "kind", "organisation_id", "status"),
                   ("member_id", "status", "created_at"))  # a member's digest rows (run_digests), by member


class DeliveryLane(Model):
    """One (platform, workspace/tenant) queue of outbound requests: its lease (one replica works a
    lane at a time, so that replica's pacer is the lane's only one), its shared 429 pause and its
    in-place update budget."""

    id = fields.IntField(primary_key=True)
    platform = fields.CharField(max_length=10)
    workspace_external_id = fields.CharField(max_length=100)
    leased_by = fields.CharField(max_length=64, default="")
    lease_until = fields.DatetimeField(null=True)
    paused_until = fields.DatetimeField(null=True)  # a 429's Retry-After, honoured by every replica
    last_served_at = fields.DatetimeField(null=True)  # least recently served lanes are picked first
    # The lane's in-place update budget (bot.core.delivery.lanes.LaneBudgets), handed from one lease
    # holder to the next: tokens as of a time (null: never spent, full; a future time: paused).
    update_tokens = fields.FloatField(null=True)
    update_tokens_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "delivery_lane"
        unique_together = (("platform", "workspace_external_id"),)


class Acknowledgement(Model):
    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="acknowledgements", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="acknowledgements", on_delete=fields.CASCADE
    )
    delivery: fields.ForeignKeyNullableRelation[Delivery] = fields.ForeignKeyField(
        "models.Delivery", related_name="acknowledgements", null=True, on_delete=fields.SET_NULL
    )
    platform = fields.CharField(max_length=10)
    revision = fields.IntField(default=1)
    acknowledged_at = fields.DatetimeField()
    organisation_id = fields.IntField(null=True)  # the member's, at the click (see Delivery.organisation_id)

    class Meta:
        table = "acknowledgement"
        unique_together = (("notice", "member", "revision"),)
        indexes = (("notice_id", "revision", "acknowledged_at", "member_id"),  # the console's counts and timeline
                   ("notice_id", "revision", "organisation_id", "member_id"))  # ... per organisation


class NoticeEngagement(Model):
    """A notice's engagement figures per partner CAM, by tier, region and role, as the clock last
    worked them out (`bot.core.insights.engagement.refresh_engagement`): the console's engagement page
    adds these up instead of reading every delivery and acknowledgement of its window.

    `fingerprint` is what the figures were worked out from (revision, counts, last ids); the
    clock works a notice out again when it changes, or when a directory import marks it (""): it
    changed the role of a member, or the tier, region or CAM of an organisation, it reached
    (`bot.core.insights.recount`)."""

    notice: fields.OneToOneRelation[Notice] = fields.OneToOneField(
        "models.Notice", related_name="engagement", on_delete=fields.CASCADE, primary_key=True
    )
    computed_at = fields.DatetimeField()
    fingerprint = fields.CharField(max_length=200)
    figures = fields.TextField()  # JSON, see engagement._fold: per CAM, per grouping and key

    class Meta:
        table = "notice_engagement"


class Escalation(Model):
    """One per notice per organisation once the deadline passes: the CAM is told who has not
    acknowledged. Written before the DM is sent."""

    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="escalations", on_delete=fields.CASCADE
    )
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="escalations", on_delete=fields.CASCADE
    )
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="escalations", null=True, on_delete=fields.SET_NULL
    )
    member_ids = fields.JSONField(default=list)  # members who had not acknowledged
    status = fields.CharField(max_length=20, default=DeliveryStatus.PENDING.value)
    attempts = fields.IntField(default=0)
    claimed_until = fields.DatetimeField(null=True)
    channel_id = fields.CharField(max_length=200, default="")
    message_id = fields.CharField(max_length=200, default="")
    error = fields.TextField(default="")
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "escalation"
        unique_together = (("notice", "organisation"),)
        indexes = (("status", "claimed_until"),)  # the tick's sweep for escalations to send (migration 0030)


class ApiToken(Model):
    """Bearer tokens for the reports API (only a SHA-256 of each token is stored)."""

    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="api_tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=100, default="")
    created_at = fields.DatetimeField()
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    # The role the token was created with (migration 0036): it reads at most what this role may,
    # and what both this and the person's current role may when that is less.
    role = fields.CharField(max_length=20)
    expires_at = fields.DatetimeField(null=True)  # null: no expiry (`token create --no-expiry`, tokens before 0036)

    class Meta:
        table = "api_token"


class AuditChainHead(Model):
    """A single row holding the last appended event's sequence and hash. Appends lock it, which
    serialises them across replicas (PostgreSQL) and lets `verify` notice a truncated tail (one
    whose head was rewound too only against an anchor kept outside the database: `verify --head`)."""

    id = fields.IntField(primary_key=True)
    seq = fields.BigIntField(default=0)
    hash = fields.CharField(max_length=64, default="")

    class Meta:
        table = "audit_chain_head"


class AuditEvent(Model):
    """Append-only record of what happened. `prev_hash`/`hash` are filled by the audit chain."""

    id = fields.BigIntField(primary_key=True)
    occurred_at = fields.DatetimeField()
    kind = fields.CharField(max_length=40)
    actor = fields.CharField(max_length=254, default="")
    notice_id = fields.IntField(null=True, db_index=True)
    member_id = fields.IntField(null=True)
    data = fields.JSONField(default=dict)
    seq = fields.BigIntField(null=True, unique=True)  # position in the chain: 1, 2, 3, ...
    prev_hash = fields.CharField(max_length=64, null=True)
    hash = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "audit_event"
        indexes = (("notice_id", "kind"),  # a notice's events by kind, read from the index alone
                   ("kind", "occurred_at"))  # the recent events of one kind: a used install link (migration 0031)


class Question(Model):
    """A partner's question to the onboarding assistant, its answer, feedback and any hand-off."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="questions", on_delete=fields.CASCADE
    )
    platform = fields.CharField(max_length=10)
    text = fields.TextField()
    asked_at = fields.DatetimeField()
    entry_id = fields.CharField(max_length=100, default="")  # the knowledge-base entry given, if any
    # the entry offered as "Did you mean" (with an answer, or instead of one when not sure), if any
    suggested_entry_id = fields.CharField(max_length=100, default="")
    score = fields.FloatField(default=0.0)
    abstained = fields.BooleanField(default=False)
    feedback = fields.CharField(max_length=20, default="")  # "" | helpful | not_helpful
    handoff_status = fields.CharField(max_length=20, default="")  # "" | open | answered | failed
    handed_off_at = fields.DatetimeField(null=True)
    cam: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="questions", null=True, on_delete=fields.SET_NULL
    )
    reply_text = fields.TextField(default="")
    replied_at = fields.DatetimeField(null=True)
    replied_by = fields.CharField(max_length=254, default="")
    # where the member asked (to relay the CAM's reply into the same conversation, and thread)
    channel_id = fields.CharField(max_length=200, default="")
    thread_id = fields.CharField(max_length=50, default="")  # "" at the top level; Slack: the thread's ts
    answer_message_id = fields.CharField(max_length=200, default="")

    class Meta:
        table = "question"
        indexes = (("handoff_status", "cam_id"),)


class KBProposal(Model):
    """A CAM's proposal to teach the assistant a handed-off question (issue 16): as another phrasing
    of an existing entry, or as a new entry whose answer is the CAM's reply. Once an admin approves
    it, it is part of the knowledge base (an overlay on the ``HERALD_KB_DIR`` files)."""

    id = fields.IntField(primary_key=True)
    question: fields.ForeignKeyNullableRelation[Question] = fields.ForeignKeyField(
        "models.Question", related_name="kb_proposals", null=True, on_delete=fields.SET_NULL
    )
    kind = fields.CharField(max_length=20)  # phrasing | entry
    entry_id = fields.CharField(max_length=100)  # the entry a phrasing joins, or the new entry's id
    question_text = fields.TextField()
    answer = fields.TextField(default="")  # a new entry's answer (the CAM's reply)
    source = fields.CharField(max_length=20, default="")  # reply | not_helpful
    status = fields.CharField(max_length=20, default="pending")  # pending | approved | rejected
    proposed_by = fields.CharField(max_length=254)
    proposed_at = fields.DatetimeField()
    decided_by = fields.CharField(max_length=254, default="")
    decided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "kb_proposal"
        unique_together = (("question", "kind"),)
        indexes = (("status",),)


class JourneyStep(Model):
    """One member's progress on one onboarding step: sent, nudged, done."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="journey_steps", on_delete=fields.CASCADE
    )
    journey = fields.CharField(max_length=50)
    step_key = fields.CharField(max_length=100)
    position = fields.IntField()  # 1-based order in the journey
    status = fields.CharField(max_length=20, default="pending")  # pending | sent | failed | done
    platform = fields.CharField(max_length=10, default="")
    channel_id = fields.CharField(max_length=200, default="")
    message_id = fields.CharField(max_length=200, default="")
    error = fields.TextField(default="")
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    nudged_at = fields.DatetimeField(null=True)
    done_at = fields.DatetimeField(null=True)

    class Meta:
        table = "journey_step"
        unique_together = (("member", "step_key"),)


class DigestRun(Model):
    """One digest message per member per period (written before it is sent)."""

    id = fields.IntField(primary_key=True)
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="digests", on_delete=fields.CASCADE
    )
    period = fields.CharField(max_length=20)  # 2026-01-05 (daily) or 2026-W02 (weekly)
    notice_ids = fields.JSONField(default=list)
    status = fields.CharField(max_length=20, default="pending")  # pending | sent | failed | empty
    platform = fields.CharField(max_length=10, default="")
    channel_id = fields.CharField(max_length=200, default="")
    message_id = fields.CharField(max_length=200, default="")
    error = fields.TextField(default="")
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "digest_run"
        unique_together = (("member", "period"),)
        indexes = (("status", "created_at"),)  # the tick's sweep for interrupted runs (migration 0030)


class NoticeVariant(Model):
    """One version (title and body) of a notice in an A/B test. Variant A is the notice's own text."""

    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="variants", on_delete=fields.CASCADE
    )
    label = fields.CharField(max_length=1)  # A, B, C or D
    title = fields.CharField(max_length=200)
    body = fields.TextField()

    class Meta:
        table = "notice_variant"
        unique_together = (("notice", "label"),)


class NoticeExperiment(Model):
    """A notice's A/B test: the share of the audience sent first, and the variant rolled out to the
    rest once chosen (set once, by a conditional update, whichever replica or command comes first)."""

    id = fields.IntField(primary_key=True)
    notice: fields.OneToOneRelation[Notice] = fields.OneToOneField(
        "models.Notice", related_name="experiment", on_delete=fields.CASCADE
    )
    share_percent = fields.SmallIntField(null=True)  # None = every recipient at once
    winner = fields.CharField(max_length=1, default="")
    rolled_out_at = fields.DatetimeField(null=True)
    rolled_out_by = fields.CharField(max_length=254, default="")
    created_at = fields.DatetimeField()

    class Meta:
        table = "notice_experiment"


class NoticeInteraction(Model):
    """A member's press of a button on a notice other than Acknowledge (e.g. its link): the first
    press and how many, for comparing variants."""

    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="interactions", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="interactions", on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=20)  # link
    platform = fields.CharField(max_length=10)
    first_at = fields.DatetimeField()
    presses = fields.IntField(default=1)

    class Meta:
        table = "notice_interaction"
        unique_together = (("notice", "member", "kind"),)


class Survey(Model):
    """A pulse survey: what its notice asks and how it may be answered. Journey surveys are standing
    surveys (`key` set) that members receive one by one as they reach a journey step."""

    id = fields.IntField(primary_key=True)
    notice: fields.OneToOneRelation[Notice] = fields.OneToOneField(
        "models.Notice", related_name="survey", on_delete=fields.CASCADE
    )
    key = fields.CharField(max_length=120, null=True, unique=True)  # journey:<step>:<definition hash>
    question = fields.CharField(max_length=300)
    kind = fields.CharField(max_length=10)  # options | scale
    options = fields.JSONField(default=list)  # option labels, in order (kind options)
    scale_min = fields.SmallIntField(null=True)
    scale_max = fields.SmallIntField(null=True)
    follow_up = fields.CharField(max_length=300, default="")  # the free-text question, "" = none
    anonymous = fields.BooleanField(default=False)
    # Anonymous surveys: the key that turns a member into their answer's respondent code (sealed with
    # HERALD_SECRET_KEY when set). Erased when the survey closes: from then on no stored value
    # links an answer to a member.
    respondent_key = fields.TextField(default="")
    closes_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "survey"


class SurveyAnswer(Model):
    """A respondent's current answer: one per survey and respondent, the latest wins (every change is
    kept in SurveyAnswerChange). Anonymous surveys store no member, only the respondent code and
    the segment (organisation, role) that breakdowns need."""

    id = fields.IntField(primary_key=True)
    survey: fields.ForeignKeyRelation[Survey] = fields.ForeignKeyField(
        "models.Survey", related_name="answers", on_delete=fields.CASCADE
    )
    respondent = fields.CharField(max_length=64)
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="survey_answers", null=True, on_delete=fields.SET_NULL
    )
    organisation: fields.ForeignKeyNullableRelation[Organisation] = fields.ForeignKeyField(
        "models.Organisation", related_name="survey_answers", null=True, on_delete=fields.SET_NULL
    )
    role = fields.CharField(max_length=50, default="")
    value = fields.SmallIntField()  # the option's index (from 0) or the scale value
    comment = fields.TextField(default="")
    platform = fields.CharField(max_length=10)
    answered_at = fields.DatetimeField()
    changed_at = fields.DatetimeField()
    changes = fields.IntField(default=0)

    class Meta:
        table = "survey_answer"
        unique_together = (("survey", "respondent"),)


class SurveyAnswerChange(Model):
    """The history of answers: the first answer and every change of answer or comment."""

    id = fields.IntField(primary_key=True)
    survey: fields.ForeignKeyRelation[Survey] = fields.ForeignKeyField(
        "models.Survey", related_name="answer_changes", on_delete=fields.CASCADE
    )
    respondent = fields.CharField(max_length=64)
    value = fields.SmallIntField()
    comment = fields.TextField(default="")
    platform = fields.CharField(max_length=10)
    changed_at = fields.DatetimeField()

    class Meta:
        table = "survey_answer_change"
        indexes = (("survey_id", "respondent"),)
class ConsoleSignIn(Model):
    """A single-use sign-in link to the console, handed out in chat or by the CLI. Only a SHA-256
    of the link's token is stored."""

    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="console_sign_ins", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    issued_via = fields.CharField(max_length=20, default="")  # slack | teams | cli | sandbox
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "console_sign_in"


class ConsoleSession(Model):
    """A signed-in console session (the browser holds the token in an HttpOnly cookie, the
    database only its SHA-256)."""

    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="console_sessions", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    ended_at = fields.DatetimeField(null=True)  # signed out

    class Meta:
        table = "console_session"


class SandboxMessage(Model):
    """What Herald "sent" a member on the sandbox platform, as Slack and as Teams would show it:
    the Block Kit blocks and the Adaptive Card, rendered by the same code as for those platforms."""

    id = fields.IntField(primary_key=True)
    user_id = fields.CharField(max_length=100, db_index=True)  # the member's sandbox account
    delivery_id = fields.IntField(null=True, unique=True)  # a notice delivery: at most one message
    notice_id = fields.IntField(null=True)
    title = fields.CharField(max_length=300, default="")  # the plain-text summary
    blocks = fields.JSONField(default=list)  # Slack Block Kit
    card = fields.JSONField(default=dict)  # Adaptive Card
    version = fields.IntField(default=1)  # 1 + in-place updates
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "sandbox_message"


class MessagePurpose(StrEnum):
    JOURNEY_STEP = "journey_step"  # a journey step or milestone message to the member
    JOURNEY_CAM = "journey_cam"  # the note to the CAM that a member completed their journey
    JOURNEY_NUDGE = "journey_nudge"
    DIGEST = "digest"
    ESCALATION = "escalation"
    ESCALATION_FALLBACK = "escalation_fallback"  # an escalation its partner's CAM could not receive, to the author
    HANDOFF = "handoff"  # a partner's question passed to their CAM
    RELAY = "relay"  # the CAM's answer relayed to the partner
    STAFF_NOTE = "staff_note"  # a note to staff about another message (e.g. a relay that failed)
    ANSWER = "answer"  # the assistant's answer, when the platform throttled sending it at once
    HANDOFF_REMINDER = "handoff_reminder"  # a hand-off still unanswered, to the CAM it is filed under
    HANDOFF_WAITING = "handoff_waiting"  # to the partner: their question is still with the CAM, who was reminded


class OutboundMessage(_DueSince, Model):
    """A direct message (not a notice) waiting for, or sent by, the outbox: everything Herald sends
    apart from notice deliveries. Written in the same transaction as the state change that causes
    it; the outbox sends it in its workspace's lane, under the same pacing and rate-limit pauses as
    the notices, then calls the purpose's completion hook (bot.core.delivery.messages)."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=200, unique=True)  # idempotency key: purpose:reference[:...]
    purpose = fields.CharField(max_length=20)
    reference = fields.IntField(default=0)  # the row it belongs to (JourneyStep, DigestRun, Escalation, Question)
    priority = fields.SmallIntField(default=3)  # lower first within a lane
    member: fields.ForeignKeyNullableRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="outbound_messages", null=True, on_delete=fields.CASCADE
    )
    staff: fields.ForeignKeyNullableRelation[Staff] = fields.ForeignKeyField(
        "models.Staff", related_name="outbound_messages", null=True, on_delete=fields.SET_NULL
    )
    account: fields.ForeignKeyNullableRelation[PlatformAccount] = fields.ForeignKeyField(
        "models.PlatformAccount", related_name="outbound_messages", null=True, on_delete=fields.SET_NULL
    )
    platform = fields.CharField(max_length=10)
    workspace_external_id = fields.CharField(max_length=100, default="")  # the lane
    recipient = fields.JSONField(default=dict)  # user_id, dm_channel, service_url, display_name
    message = fields.JSONField(default=dict)  # the rendered DirectMessage
    status = fields.CharField(max_length=20, default=DeliveryStatus.PENDING.value)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    due_since = fields.DatetimeField(null=True)  # as Delivery.due_since
    claimed_by = fields.CharField(max_length=64, default="")
    claimed_until = fields.DatetimeField(null=True)
    # the current claim's request may have started (set just before it): only such a row taken back
    # from an expired claim is in doubt; one still waiting for its lane's pace is sent normally
    request_started = fields.BooleanField(default=False)
    channel_id = fields.CharField(max_length=200, default="")
    message_id = fields.CharField(max_length=200, default="")
    error = fields.TextField(default="")
    sent_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "outbound_message"
        indexes = (("status", "next_attempt_at"), ("purpose", "reference"))


class SeenRequest(Model):
    """An inbound request Herald has acted on, remembered until a replay of it could no longer
    pass the platform's check (Slack: the five-minute signature window). A replayed request
    finds its key here and has no second effect."""

    id = fields.IntField(primary_key=True)
    key = fields.CharField(max_length=100, unique=True)  # "slack:<sha256 of the signature>", "teams:<sha256>"
    seen_at = fields.DatetimeField()
    expires_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "seen_request"
