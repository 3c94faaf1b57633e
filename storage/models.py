"""Tortoise models: the database is the source of truth for every notice, delivery and click."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class Platform(StrEnum):
    SLACK = "slack"
    TEAMS = "teams"


class StaffRole(StrEnum):
    CAM = "cam"
    COMPLIANCE = "compliance"
    ADMIN = "admin"


class NoticeStatus(StrEnum):
    DRAFT = "draft"
    CANCELLED = "cancelled"
    SENDING = "sending"
    SENT = "sent"


class DeliveryStatus(StrEnum):
    PENDING = "pending"      # written, waiting for a worker
    SENDING = "sending"      # claimed by a worker under a lease
    DELIVERED = "delivered"  # the platform accepted it; message ref stored
    FAILED = "failed"        # gave up; `error` says why in words a person can act on
    DIGEST = "digest"        # nice-to-know: kept for the member's digest, never DM'd alone


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
    locale = fields.CharField(max_length=20, default="")
    active = fields.BooleanField(default=True)
    joined_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "member"
        unique_together = (("organisation", "email"),)


class Workspace(Model):
    """A Slack workspace (team) or Teams tenant Herald is installed in."""

    id = fields.IntField(primary_key=True)
    platform = fields.CharField(max_length=10)
    external_id = fields.CharField(max_length=100)
    name = fields.CharField(max_length=200, default="")
    bot_token = fields.TextField(default="")
    bot_user_id = fields.CharField(max_length=50, default="")
    active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "workspace"
        unique_together = (("platform", "external_id"),)


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
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "platform_account"
        unique_together = (("platform", "workspace_external_id", "user_id"),)


class Staff(Model):
    """Vendor staff: CAMs, compliance officers and admins."""

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)
    name = fields.CharField(max_length=200, default="")
    role = fields.CharField(max_length=20)
    slack_team_id = fields.CharField(max_length=100, default="")
    slack_user_id = fields.CharField(max_length=100, default="")
    teams_aad_object_id = fields.CharField(max_length=100, default="")
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
    recipient_count = fields.IntField(default=0)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notice"


class Delivery(Model):
    """The outbox: one row per recipient per platform, written before anything is sent."""

    id = fields.IntField(primary_key=True)
    notice: fields.ForeignKeyRelation[Notice] = fields.ForeignKeyField(
        "models.Notice", related_name="deliveries", on_delete=fields.CASCADE
    )
    member: fields.ForeignKeyRelation[Member] = fields.ForeignKeyField(
        "models.Member", related_name="deliveries", on_delete=fields.CASCADE
    )
    platform = fields.CharField(max_length=10)
    account: fields.ForeignKeyNullableRelation[PlatformAccount] = fields.ForeignKeyField(
        "models.PlatformAccount", related_name="deliveries", null=True, on_delete=fields.SET_NULL
    )
    workspace_external_id = fields.CharField(max_length=100, default="")
    status = fields.CharField(max_length=20, default=DeliveryStatus.PENDING.value)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    claimed_by = fields.CharField(max_length=64, default="")
    claimed_until = fields.DatetimeField(null=True)
    channel_id = fields.CharField(max_length=200, default="")
    message_id = fields.CharField(max_length=200, default="")  # Slack ts / Teams activity id
    error = fields.TextField(default="")
    delivered_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "delivery"
        unique_together = (("notice", "member", "platform"),)
        indexes = (("status", "next_attempt_at"),)


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

    class Meta:
        table = "acknowledgement"
        unique_together = (("notice", "member"),)


class AuditEvent(Model):
    """Append-only record of what happened. `prev_hash`/`hash` are filled by the audit chain."""

    id = fields.BigIntField(primary_key=True)
    occurred_at = fields.DatetimeField()
    kind = fields.CharField(max_length=40)
    actor = fields.CharField(max_length=254, default="")
    notice_id = fields.IntField(null=True, db_index=True)
    member_id = fields.IntField(null=True)
    data = fields.JSONField(default=dict)
    prev_hash = fields.CharField(max_length=64, null=True)
    hash = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "audit_event"
