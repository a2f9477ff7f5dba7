"""The rows a round of tips writes many of go in one INSERT per table (bot/db/batch_insert.py), and
the objects behave afterwards as if the ORM had flushed them: linked, changeable, gone on rollback."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, func, inspect, select

from bot.db.migrate import upgrade_to_head_async
from bot.db.models import OutboxMessage, Tip, TipEntry, TipMedia, User
from bot.db.session import create_engine, create_sessionmaker


def _new_tips(session, first_user_id: int, count: int) -> list[Tip]:
    """What a round of ``count`` first-time tipsters adds: a user, a tip, its entry, the answer; the
    last one with a photo (a table written through the unit of work) pointing at its tip and entry."""
    now = datetime.now(UTC)
    tips = []
    for number in range(count):
        user_id = first_user_id + number
        session.add(User(id=user_id, created_at=now))
        tip = Tip(reference=f"T-TEST-{user_id:04d}", alias="Blue Heron", tipster_id=user_id, created_at=now,
                  last_message_at=now)
        entry = TipEntry(tip=tip, kind="text", text=f"tip {number}", created_at=now)
        session.add_all([tip, entry, OutboxMessage(chat_id=user_id, method="sendMessage", payload="{}",
                                                   created_at=now, tip=tip)])
        tips.append(tip)
    session.add(TipMedia(tip=tips[-1], entry=entry, sha256="0" * 64, width=10, height=10, created_at=now))
    return tips


async def test_a_round_of_tips_is_one_insert_per_table_and_stays_changeable(settings):
    await upgrade_to_head_async(settings.database_url)
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda _conn, _cursor, sql, *_args: statements.append(sql.split("(")[0].strip()))
    try:
        async with sessionmaker() as session:
            tips = _new_tips(session, 7000, 5)
            await session.flush()
            assert sorted(s for s in statements if s.startswith("INSERT")) == [
                "INSERT INTO outbox", "INSERT INTO tip_entries", "INSERT INTO tip_media", "INSERT INTO tips",
                "INSERT INTO users"]
            assert all(inspect(tip).persistent and tip.id for tip in tips)
            tips[0].status = "useful"  # changed after the insert: an UPDATE at commit
            await session.commit()

        async with sessionmaker() as session:
            stored = {tip.reference: tip for tip in await session.scalars(select(Tip))}
            assert len(stored) == 5 and stored["T-TEST-7000"].status == "useful"
            for tip in stored.values():
                entry = await session.scalar(select(TipEntry).where(TipEntry.tip_id == tip.id))
                answer = await session.scalar(select(OutboxMessage).where(OutboxMessage.tip_id == tip.id))
                assert entry.text == f"tip {tip.tipster_id - 7000}" and answer.chat_id == tip.tipster_id
                assert answer.status == "pending" and answer.priority == 0  # the models' defaults
            photo = await session.scalar(select(TipMedia))
            last = stored["T-TEST-7004"]
            assert photo.tip_id == last.id
            assert photo.entry_id == await session.scalar(select(TipEntry.id).where(TipEntry.tip_id == last.id))
    finally:
        await engine.dispose()


async def test_rows_of_a_rolled_back_round_are_neither_kept_nor_taken_for_sent(settings):
    await upgrade_to_head_async(settings.database_url)
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            tips = _new_tips(session, 7100, 3)
            await session.flush()
            answers = [obj for obj in session if isinstance(obj, OutboxMessage)]
            await session.rollback()
            # the update processor sends only the answers its commit kept (outbox.committed_rows)
            assert not any(inspect(obj).persistent for obj in [*tips, *answers])
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Tip)) == 0
            assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    finally:
        await engine.dispose()
