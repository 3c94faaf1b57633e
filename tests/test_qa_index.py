"""The knowledge base's semantic index is built without holding up questions or deliveries
(issue 10 items 2 and 3): questions are answered from keywords until the index is ready, the
vectors are computed in a child process, and the service switches over when they are there."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.core.directory.staff import add_staff
from bot.core.onboarding import index
from bot.core.onboarding.learning import ENTRY, decide, propose
from bot.core.onboarding.qa import default_directory
from storage.models import Member, Question, Staff
from tests.fakes.slack_signing import event_body
from tests.support import TEAM, SlackHarness, seed_directory, start_harness, stop_harness, wait_until

pytestmark = pytest.mark.usefixtures("warm_knowledge_base")  # its vectors make the child's build quick


@pytest.fixture
def edited_kb(tmp_path: Path) -> Path:
    """The sample knowledge base with a comment added: the same texts, a knowledge base no process
    or store has seen as such, so the service has to build its index."""
    directory = tmp_path / "kb"
    shutil.copytree(default_directory(), directory)
    (path,) = directory.glob("*.yaml")
    path.write_text(path.read_text(encoding="utf-8") + f"\n# edited for {tmp_path.name}\n", encoding="utf-8")
    return directory


async def _dm(slack: SlackHarness, user: str, text: str) -> dict:
    before = slack.fake.call_count("chat.postMessage")
    event = {"type": "message", "channel_type": "im", "channel": f"D{user}", "user": user, "text": text,
             "ts": "1700000000.000200"}
    response = await slack.post_signed(event_body(event, TEAM))
    assert response.status == 200
    await wait_until(lambda: slack.fake.call_count("chat.postMessage") > before, what="the answer")
    return slack.fake.calls_to("chat.postMessage")[-1].args


async def test_questions_during_the_index_build_are_answered_from_keywords_then_it_switches(
        db: str, edited_kb: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    slack = await start_harness(db, extra_settings={"kb_dir": edited_kb})
    await seed_directory(slack.clock)
    herald = slack.herald
    herald.kb_build_gate = hold = asyncio.Event()  # the build cannot finish until the test says so
    store = herald.settings.cache_dir / "vectors"
    try:
        assert not index.vectors_ready(edited_kb, store)
        # Asked while the build is held: answered (so it did not wait for the build), from keywords.
        answer = await _dm(slack, "UANNA", "how do i register a deal")
        assert "How do I register a deal?" in str(answer["blocks"])
        assert (await Question.get()).entry_id == "deal-registration-how"
        assert "semantic index not ready, answering from keywords" in caplog.text
        # Keywords alone cannot answer an indirect question
        indirect = "is the instructor-led training free"  # keywords alone miss it; the model does not
        answer = await _dm(slack, "UDI", indirect)
        assert "I don't know that one yet" in str(answer["blocks"])
        assert not hold.is_set() and not (await herald.knowledge_base()).semantic

        hold.set()
        kb = await herald.semantic_ready()
        assert kb.semantic and await herald.knowledge_base() is kb
        assert "semantic index ready, switching from keywords" in caplog.text
        assert "built in a child process" in caplog.text
        assert index.vectors_ready(edited_kb, store)  # the next start skips the child

        answer = await _dm(slack, "UDI", indirect)
        assert "I don't know that one yet" not in str(answer["blocks"])
        question = await Question.filter(text=indirect).order_by("-id").first()
        assert question is not None and question.entry_id == "training-cost" and not question.abstained
    finally:
        await stop_harness(slack)


async def test_a_warm_start_loads_the_stored_vectors_without_a_child(
        db: str, edited_kb: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    slack = await start_harness(db, extra_settings={"kb_dir": edited_kb})
    try:
        store = slack.herald.settings.cache_dir / "vectors"
        await asyncio.to_thread(index.load_semantic, edited_kb, store)  # e.g. `python -m ...index` at image build
        assert index.vectors_ready(edited_kb, store)
        kb = await slack.herald.semantic_ready()
        assert kb.semantic
        assert "from stored vectors" in caplog.text and "building the semantic index in a child" not in caplog.text
    finally:
        await stop_harness(slack)


async def test_a_first_start_loads_the_vectors_shipped_with_the_knowledge_base(
        db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The sample knowledge base carries its vectors (issue 16 item 4: a first start must not spend
    half a minute building them): an empty cache, no child, and the shipped files left as they were."""
    caplog.set_level(logging.INFO)
    directory = default_directory()
    shipped = index.shipped_store(directory)
    files = {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()}
    slack = await start_harness(db, extra_settings={"kb_dir": directory, "cache_dir": tmp_path / "cache"})
    try:
        kb = await slack.herald.semantic_ready()
        assert kb.semantic
        assert "from the vectors shipped with it" in caplog.text
        assert "building the semantic index in a child" not in caplog.text
        assert {p.name: p.stat().st_mtime_ns for p in shipped.iterdir()} == files, (  # read, never written
            "the assistant embedded texts the shipped vectors lack: run `.venv/bin/herald qa build-index --ship`")
        assert not list((tmp_path / "cache").rglob("*.npy"))
    finally:
        await stop_harness(slack)


def test_the_shipped_vectors_are_those_of_the_shipped_files() -> None:
    directory = default_directory()
    assert index.ready_store(directory, Path("/nonexistent")) == index.shipped_store(directory), (
        "config/kb changed without its vectors: run `.venv/bin/herald qa build-index --ship`")
    assert len(list(index.shipped_store(directory).glob(f"*{index.MARKER_SUFFIX}"))) == 1  # no stale ones


def test_an_edited_knowledge_base_does_not_use_the_vectors_of_the_old_one(edited_kb: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    index._write_marker(index.marker(store, index.fingerprint(edited_kb)))
    assert index.vectors_ready(edited_kb, store)
    (path,) = edited_kb.glob("*.yaml")
    path.write_text(path.read_text(encoding="utf-8").replace("deal", "Deal", 1), encoding="utf-8")
    assert not index.vectors_ready(edited_kb, store)


async def test_a_failed_build_keeps_answering_from_keywords(db: str, edited_kb: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    slack = await start_harness(db, extra_settings={"kb_dir": edited_kb, "cache_dir": blocked})
    try:
        kb = await slack.herald.semantic_ready()
        assert not kb.semantic
        assert "semantic index build failed, answering from keywords until restart" in caplog.text
        assert "cannot write the vector store" in caplog.text  # the child's reason, in the service's log
    finally:
        await stop_harness(slack)


async def test_a_reload_whose_semantic_rebuild_fails_keeps_the_semantic_index_answering_and_says_so(
        db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Semantic mode: an admin approves a learned entry and the next tick rebuilds the semantic
    index with it, which fails here (the vector store cannot be written). The log used to say
    "answering from keywords until restart" while the semantic index loaded before went on
    answering. Now the log says that index stays in use without the new items, an indirect
    question only the semantic index answers is still answered, and the rebuild is not retried on
    every tick (only when the files or the learned items change)."""
    caplog.set_level(logging.INFO)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    slack = await start_harness(db, extra_settings={"cache_dir": blocked})
    herald = slack.herald
    try:
        await seed_directory(slack.clock)
        assert (await herald.semantic_ready()).semantic  # the sample's index, loaded by the fixture
        await add_staff("admin@vendor.example", "admin", name="Ada Admin", now=slack.clock.now(), actor="test")
        cam, admin = await Staff.get(email="cam@vendor.example"), await Staff.get(email="admin@vendor.example")
        handed = await Question.create(
            member=await Member.get(email="anna@acme.example"), platform="slack", abstained=True,
            text="is there parking for visitors at your headquarters", asked_at=slack.clock.now(),
            channel_id="DUANNA", handoff_status="answered", cam=cam, reply_text="Yes, behind building B.")
        proposal, _ = await propose(handed.id, cam, ENTRY, now=slack.clock.now())
        await decide(proposal.id, admin, approve=True, now=slack.clock.now(), kb_dir=herald.settings.kb_dir)

        assert (await herald.tick())["kb_reloaded"] == 1
        await wait_until(lambda: [r for r in caplog.records if r.name == "bot.service" and r.levelno >= logging.ERROR],
                         timeout=120, what="the rebuild's outcome")
        kb = await herald.semantic_ready()
        assert kb.semantic and await herald.knowledge_base() is kb
        logged = caplog.text
        assert "answering from keywords" not in logged, logged
        assert "the semantic index loaded before stays in use" in logged

        indirect = "is the instructor-led training free"  # keywords alone miss it; the model does not
        answer = await _dm(slack, "UDI", indirect)
        assert "I don't know that one yet" not in str(answer["blocks"])
        question = await Question.filter(text=indirect).order_by("-id").first()
        assert question is not None and question.entry_id == "training-cost" and not question.abstained

        caplog.clear()
        assert (await herald.tick())["kb_reloaded"] == 0  # said once; tried again when something changes
        assert "rebuilding" not in caplog.text
    finally:
        await stop_harness(slack)


_SMALL_KB = """vendor: Northwind Security
entries:
  - id: portal-password
    title: How do I reset my Partner Portal password?
    topic: onboarding
    answer: Use "Forgot password" on the portal's sign-in page.
    alt_questions: [forgot my portal password]
  - id: order-status
    title: Where is my order?
    topic: operations
    answer: The portal's Orders page shows each order's status and tracking number.
"""


def test_the_image_build_leaves_the_vectors_the_first_start_loads(tmp_path: Path) -> None:
    """`herald qa build-index`, which the Dockerfile runs before declaring /data a volume, stores the
    vectors where the server looks for them (HERALD_CACHE_DIR/vectors), for that knowledge base."""
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "faq.yaml").write_text(_SMALL_KB, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(HERALD_KB_DIR=str(kb), HERALD_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "bot.cli", "qa", "build-index"]
    built = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "stored the vectors" in built.stdout
    assert index.vectors_ready(kb, tmp_path / "cache" / "vectors")
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already" in again.stdout

    lines = [line.strip() for line in (Path(__file__).resolve().parents[1] / "Dockerfile").read_text().splitlines()]
    assert not index.shipped_store(kb).exists()
    build, volume, user = lines.index("RUN herald qa build-index"), lines.index("VOLUME /data"), lines.index("USER herald")
    assert user < build < volume  # owned by the server's user; written before the volume (else discarded)


def test_build_index_ship_stores_the_vectors_with_the_knowledge_base(tmp_path: Path) -> None:
    """`herald qa build-index --ship` puts them in the knowledge base's own vectors/ (what config/kb
    carries), replacing those of earlier versions of its files; the plain command then finds them."""
    kb = tmp_path / "kb"
    stale = index.shipped_store(kb)
    stale.mkdir(parents=True)
    (kb / "faq.yaml").write_text(_SMALL_KB, encoding="utf-8")
    (stale / "all-mpnet-base-v2-0123456789abcdef0123456789abcdef.npy").write_bytes(b"old")
    (stale / f"index-0123456789abcdef0123456789abcdef{index.MARKER_SUFFIX}").write_text("old")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(HERALD_KB_DIR=str(kb), HERALD_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "bot.cli", "qa", "build-index"]
    built = subprocess.run([*command, "--ship"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    assert index.ready_store(kb, tmp_path / "cache" / "vectors") == stale
    assert not (stale / "all-mpnet-base-v2-0123456789abcdef0123456789abcdef.npy").exists()
    assert len(list(stale.glob(f"*{index.MARKER_SUFFIX}"))) == 1
    assert not (tmp_path / "cache").exists()
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and f"already in {stale}" in again.stdout
    # --ship builds afresh even then: the texts embedded can change with the code, not the files
    shipped_again = subprocess.run([*command, "--ship"], env=env, cwd=tmp_path, capture_output=True, text=True,
                                   timeout=300)
    assert shipped_again.returncode == 0 and f"stored the vectors of {kb} in {stale}" in shipped_again.stdout
