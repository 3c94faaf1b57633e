"""Review (area: audit): the tamper-evident audit trail and the compliance reports, as an auditor
who distrusts the operator sees them. Each test fails on the current code for the reason in its
docstring and passes once that defect is fixed."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from datetime import timedelta

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.core.compliance.reports import report_chunks
from bot.core.compliance.verify import verify_chain
from bot.core.notices import acks
from storage import db as storage_db
from storage.models import Acknowledgement, AuditChainHead, AuditEvent, Delivery, Notice
from tests.support import TEAM, Rig


async def _report(rig: Rig, notice_id: int) -> dict:
    text = "".join([c async for c in report_chunks(notice_id, "json", now=rig.clock.now(), actor="auditor")])
    return json.loads(text)


def _row(document: dict, email: str) -> dict:
    [row] = [r for r in document["rows"] if r["email"] == email]
    return row


# ---- 1. the report reads deliveries from a table verify never compares with the trail ---------

async def test_verify_notices_a_failed_delivery_rewritten_as_delivered(rig: Rig) -> None:
    """Ed has no chat account: his copy fails ("delivery.failed" in the chain). Rewriting his
    delivery row as delivered (one UPDATE, the audit table untouched) makes the report say he
    was delivered the recall, at a time of the operator's choosing, under an audit chain head
    that `herald audit verify` still calls intact: the report's "proof" is not the trail's."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    ed = await Delivery.get(notice_id=notice_id, member__email="ed@keys.example")
    assert ed.status == "failed"
    assert await AuditEvent.filter(kind="delivery.failed", notice_id=notice_id, member_id=ed.member_id).exists()
    assert (await verify_chain()).ok

    await Delivery.filter(id=ed.id).update(status="delivered", error="", delivered_at=rig.clock.now() - timedelta(days=1))

    document = await _report(rig, notice_id)
    assert _row(document, "ed@keys.example")["delivered_at"] is not None  # the report now says delivered
    assert document["summary"]["failed"] == 0
    result = await verify_chain()
    assert not result.ok, ("verify calls the trail intact although the report it vouches for says a failed "
                           f"delivery was delivered: {result}")


async def test_verify_notices_a_delivery_time_moved(rig: Rig) -> None:
    """A delivered copy's `delivered_at` (the report's "delivered at", the time the reminder and
    deadline clock starts from) moved a week earlier in the delivery table: the chain's
    `delivery.delivered` event says otherwise, yet verify passes."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    anna = await Delivery.get(notice_id=notice_id, member__email="anna@acme.example")
    assert anna.status == "delivered"
    await Delivery.filter(id=anna.id).update(delivered_at=anna.delivered_at - timedelta(days=7))
    document = await _report(rig, notice_id)
    assert _row(document, "anna@acme.example")["delivered_at"] != _row(document, "bo@acme.example")["delivered_at"]
    result = await verify_chain()
    assert not result.ok, f"a back-dated delivery in the report passes verify: {result}"


# ---- 1b. what the notice said is in no event: its text can be rewritten after the fact ---------

async def test_verify_notices_the_text_of_an_acknowledged_notice_rewritten(rig: Rig) -> None:
    """SPEC: must-know notices are acknowledged "with proof that stands up in an audit" (the
    motivating case: a recall nobody could prove they had been told about). The chain's
    `notice.created` / `notice.sent` events carry the title but neither the body nor the link nor
    a digest of them, so what Anna acknowledged is held only in the mutable `notice` row: rewrite
    the body and the report (JSON: notice.body) shows the new wording as what was sent and
    acknowledged, under a chain head verify calls intact."""
    notice_id = await rig.broadcast("all")  # body "Stop selling LX-200"
    await rig.herald.outbox.drain()
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    assert (await verify_chain()).ok

    await Notice.filter(id=notice_id).update(body="For information only: no action needed.")

    document = await _report(rig, notice_id)
    assert document["notice"]["body"] == "For information only: no action needed."
    assert _row(document, "anna@acme.example")["acknowledged_at"] is not None
    result = await verify_chain()
    assert not result.ok, f"the acknowledged notice's wording was replaced and verify calls the trail intact: {result}"


# ---- 2. an acknowledgement recorded in the chain but gone from the table -------------------------

async def test_verify_notices_an_acknowledgement_row_deleted(rig: Rig) -> None:
    """README: verify "checks every acknowledgement row (what reports read) against its
    notice.acknowledged event". Only one way round: deleting Anna's acknowledgement row makes
    the report say she never acknowledged, while the chain (intact, named by the report) records
    that she did."""
    notice_id = await rig.broadcast("all")
    await rig.herald.outbox.drain()
    await acks.acknowledge(notice_id, platform="slack", workspace_id=TEAM, user_id="UANNA", now=rig.clock.now())
    assert (await verify_chain()).ok

    await Acknowledgement.filter(notice_id=notice_id).delete()

    document = await _report(rig, notice_id)
    assert _row(document, "anna@acme.example")["acknowledged_at"] is None
    assert document["summary"]["acknowledged"] == 0
    assert await AuditEvent.filter(kind="notice.acknowledged", notice_id=notice_id).count() == 1
    result = await verify_chain()
    assert not result.ok, ("the report says Anna never acknowledged, the chain says she did, and verify "
                           f"calls it intact: {result}")
