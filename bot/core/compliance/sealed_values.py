"""The values Herald stores sealed with HERALD_SECRET_KEY (`bot.common.secrets`): where they stand
against the configured keys (`herald doctor`), and re-sealing them under the current key
(`herald secrets rotate`), after which HERALD_SECRET_KEY_PREVIOUS can be dropped.

Re-sealing is safe while servers run: values are read a batch of rows at a time and each one is
written back with a compare-and-set (`UPDATE ... WHERE id = ? AND column = <the value read>`),
so a value a server wrote meanwhile (a refreshed Slack token, a survey closing and erasing its key)
is never overwritten; it is read again and is then already under the current key, or empty.
Nothing here ever reports a value itself, only what it is and which row holds it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

from tortoise.models import Model

from bot.common.secrets import SealState, TokenCipher, TokenDecryptError
from bot.core.compliance.audit import audit_event, record
from storage.models import Survey, Workspace

ROTATED = "secrets.rotated"
BATCH = 200
_ATTEMPTS = 3  # compare-and-set tries per value; a value changes rarely (a token refresh every 12 h)
_LISTED = 50  # unreadable values named in the audit event (all are counted)


@dataclass(frozen=True)
class SealedColumn:
    """A column holding a sealed value; `label` is the field that names a row to an operator."""

    kind: str
    model: type[Model]
    column: str
    label: str

    def name(self, row_label: object) -> str:
        return f"{self.kind} {row_label}"


SEALED_COLUMNS = (
    SealedColumn("workspace bot token", Workspace, "bot_token", "external_id"),
    SealedColumn("workspace refresh token", Workspace, "refresh_token", "external_id"),
    SealedColumn("survey respondent key", Survey, "respondent_key", "id"),
)


@dataclass
class SealReport:
    """How many stored values are in each `SealState`, per kind, and which ones no key opens."""

    counts: Counter[tuple[str, SealState]] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)  # "workspace bot token T0ABC"

    def total(self, state: SealState) -> int:
        return sum(n for (_, s), n in self.counts.items() if s == state)

    def kinds(self, state: SealState) -> dict[str, int]:
        return {kind: n for (kind, s), n in self.counts.items() if s == state and n}

    def add(self, column: SealedColumn, state: SealState, row_label: object) -> None:
        self.counts[(column.kind, state)] += 1
        if state == SealState.UNREADABLE:
            self.unreadable.append(column.name(row_label))


@dataclass
class RotationResult:
    """What `rotate` did: `resealed` were under a previous key, `sealed` were plaintext; `report`
    is where every value stood when read (before the re-sealing)."""

    resealed: Counter[str] = field(default_factory=Counter)
    sealed: Counter[str] = field(default_factory=Counter)
    report: SealReport = field(default_factory=SealReport)

    @property
    def unreadable(self) -> list[str]:
        return self.report.unreadable

    def as_dict(self) -> dict[str, object]:
        return {"re_encrypted": sum(self.resealed.values()), "re_encrypted_by_kind": dict(self.resealed),
                "encrypted_plaintext": sum(self.sealed.values()), "encrypted_plaintext_by_kind": dict(self.sealed),
                "already_current": self.report.total(SealState.CURRENT),
                "unreadable": len(self.unreadable), "unreadable_values": self.unreadable}


async def _rows(column: SealedColumn) -> AsyncIterator[tuple[int, object, str]]:
    """(id, label, stored value) of every row with a value in `column`, a batch at a time."""
    after = 0
    while True:
        batch = await (column.model.filter(id__gt=after).exclude(**{column.column: ""}).order_by("id")
                       .limit(BATCH).values_list("id", column.label, column.column))
        for row in batch:
            yield row
        if len(batch) < BATCH:
            return
        after = batch[-1][0]


async def seal_report(cipher: TokenCipher) -> SealReport:
    """Where every stored sealed (or plaintext) value stands against `cipher`'s keys; reads only."""
    report = SealReport()
    for column in SEALED_COLUMNS:
        async for _, label, stored in _rows(column):
            report.add(column, cipher.state(stored), label)
    return report


async def rotate(cipher: TokenCipher, *, now: datetime, actor: str) -> RotationResult:
    """Re-seal every stored value under `cipher`'s current key (plaintext ones too), row by row,
    and record `secrets.rotated` with the counts. Running it again changes nothing more."""
    if not cipher.encrypts:
        raise ValueError("rotate needs a cipher with a key")
    result = RotationResult()
    for column in SEALED_COLUMNS:
        async for row_id, label, stored in _rows(column):
            state = cipher.state(stored)
            result.report.add(column, state, label)
            if state in (SealState.PREVIOUS, SealState.PLAINTEXT) and await _reseal(cipher, column, row_id, stored):
                (result.resealed if state == SealState.PREVIOUS else result.sealed)[column.kind] += 1
    shown = result.as_dict()
    shown["unreadable_values"] = result.unreadable[:_LISTED]
    await record([audit_event(ROTATED, now=now, actor=actor, **shown)])
    return result


async def _reseal(cipher: TokenCipher, column: SealedColumn, row_id: int, stored: str) -> bool:
    """Write `stored` back under the current key unless the row changed since it was read; a
    changed row is read again (a server wrote it: it is then current, or empty)."""
    for _ in range(_ATTEMPTS):
        try:
            fresh = cipher.reseal(stored)
        except TokenDecryptError:
            return False
        if fresh == stored:
            return False
        if await column.model.filter(id=row_id, **{column.column: stored}).update(**{column.column: fresh}):
            return True
        current = await column.model.filter(id=row_id).values_list(column.column, flat=True)
        if not current:
            return False
        stored = current[0]
    return False
