"""The group commit that gathers concurrent callers' writes (bot/common/group_commit.py)."""

from __future__ import annotations

import asyncio

import pytest

from bot.common.group_commit import GroupCommit


async def test_callers_arriving_during_a_write_share_the_next_group() -> None:
    groups: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int | BaseException]:
        groups.append(items)
        if len(groups) == 1:
            await release.wait()  # the first (lone) group is in flight while the others arrive
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(write, max_group=3, name="test-group-commit")
    first = asyncio.ensure_future(commit.submit(0))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(commit.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    assert commit.busy() and groups == [[0]]
    release.set()
    assert await first == 0
    results = await asyncio.gather(*others, return_exceptions=True)
    assert groups == [[0], [1, 2, 3], [4, 5]]  # at most max_group at once, in arrival order
    assert [r if isinstance(r, int) else str(r) for r in results] == ["odd 1", 20, "odd 3", 40, "odd 5"]
    await commit.written()
    assert not commit.busy()


async def test_a_failed_write_is_every_callers_error_and_the_next_group_still_runs() -> None:
    calls = 0

    async def write(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database down")
        return [i.upper() for i in items]

    commit: GroupCommit[str, str] = GroupCommit(write, max_group=10, name="test-group-commit")
    with pytest.raises(ConnectionError):
        await commit.submit("a")
    assert await asyncio.gather(commit.submit("b"), commit.submit("c")) == ["B", "C"]


async def test_a_caller_that_goes_away_does_not_cancel_its_group() -> None:
    written: list[str] = []
    gate = asyncio.Event()

    async def write(items: list[str]) -> list[str]:
        await gate.wait()
        written.extend(items)
        return items

    commit: GroupCommit[str, str] = GroupCommit(write, max_group=10, name="test-group-commit")
    leaving = asyncio.ensure_future(commit.submit("x"))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    await commit.written()
    assert written == ["x"]
