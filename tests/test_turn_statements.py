"""What one dialog turn costs the database, counted statement by statement on SQLite and
PostgreSQL (behaviour, not time: the speed itself is measured in bench/dialog.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from handlers.core import Core
from tests.conftest import make_services
from tests.support.chat import ChatClient

# An ordinary step: the admission count (one statement that commits by itself), then one
# transaction with the processed-update mark, the joined read of account, consent and dialog,
# the dialog's write and the reply's outbox row. SQLite also sends its BEGIN IMMEDIATE;
# PostgreSQL takes the chat's advisory lock instead (storage/chat_lock.py), not counted here.
STEP_MAX = 6
# A redelivered update: the admission count, then the mark that finds it was processed.
DUPLICATE_MAX = 3


@contextmanager
def statements(engine) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "pg_advisory_xact_lock" not in statement:  # order across processes, PostgreSQL
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_a_dialog_step_and_a_duplicate_take_a_few_statements(db_url, tmp_path, clock):
    services = await make_services(db_url, tmp_path / "data", clock)
    engine = services.sessions.kw["bind"]
    try:
        anna = ChatClient(Core(services), "601")
        await anna.send("/start")
        await anna.click("Согласен")
        await anna.send("📝 Сообщить о проблеме")
        await anna.click("Жилищно")
        await anna.send("Протекает крыша над третьим подъездом уже неделю")
        await anna.click("Пропустить")  # no photos
        with statements(engine) as seen:
            answer = await anna.send("ул. Ленина, 12", update_key="address-step")
        assert "Проверьте" in anna.texts(), anna.texts()
        assert answer.replies and answer.queued
        assert len(seen) <= STEP_MAX, seen
        assert not any("SAVEPOINT" in s for s in seen), seen
        assert sum(s.lstrip().upper().startswith("SELECT") for s in seen) == 1, seen

        with statements(engine) as seen:
            again = await anna.send("ул. Ленина, 12", update_key="address-step")
        assert again.replies == []
        assert len(seen) <= DUPLICATE_MAX, seen
        assert not any("SAVEPOINT" in s for s in seen), seen

        with statements(engine) as seen:  # nothing changes: the dialog is not written
            await anna.send("/help")
        assert not any("dialog_states" in s for s in seen if not s.lstrip().startswith("SELECT"))
    finally:
        await engine.dispose()


async def test_a_new_citizen_is_one_insert_more(db_url, tmp_path, clock):
    services = await make_services(db_url, tmp_path / "data", clock)
    engine = services.sessions.kw["bind"]
    try:
        with statements(engine) as seen:
            answer = await ChatClient(Core(services), "602").send("/start")
        assert "соглас" in answer.replies[0].text.lower()
        # The mark, the read, the account, the dialog (consent asked), the reply, the count.
        assert len(seen) <= STEP_MAX + 2, seen
    finally:
        await engine.dispose()
