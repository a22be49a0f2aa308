"""A head answers with a file over Telegram; the citizen receives the text and the file."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.telegram import TelegramTransport
from handlers.staff.invites import create_invite
from scheduler.outbox import OutboxSender
from storage.models import Attachment, Item
from tests.fakes.telegram_api import FakeTelegramServer
from tests.support.chat import ChatClient
from tests.test_staff_core import report

PDF = b"%PDF-1.4 answer of the housing department"


@pytest.fixture
async def tg():
    async with FakeTelegramServer() as server:
        yield server


async def test_answer_with_a_document_reaches_the_citizen(tg, core, services, tmp_path):
    settings = Settings(telegram_token="123:TEST", telegram_api_url=tg.base_url,
                        data_dir=tmp_path / "data", _env_file=None)
    transport = TelegramTransport(settings, core)
    await transport.start()
    try:
        async with services.sessions() as session, session.begin():
            invite = await create_invite(session, services.org, "head", "housing", "ЖКХ",
                                         services.now())
        tg.user_message(1001, f"/start {invite.code}")
        await tg.wait_for(lambda r: r.chat_id == 1001 and "Добро пожаловать" in (r.text or ""))
        citizen = ChatClient(core, user_id="501")
        await report(citizen)
        async with services.sessions() as session:
            item = await session.scalar(select(Item))
        tg.press_button(1001, f"s:answer:{item.id}")
        await tg.wait_for(lambda r: r.chat_id == 1001 and "Напишите ответ" in (r.text or ""))
        tg.user_message(1001, document=PDF)
        await tg.wait_for(lambda r: r.chat_id == 1001 and "сохранено" in (r.text or ""))
        tg.user_message(1001, "Акт обследования во вложении, ремонт назначен на 30.11")
        await tg.wait_for(lambda r: r.chat_id == 1001 and "отправлен заявителю" in (r.text or ""))
        await OutboxSender(services, {"telegram": transport}).sweep()
        answer = await tg.wait_for(lambda r: r.chat_id == 501 and "Акт обследования" in
                                   (r.text or ""))
        document = await tg.wait_for(lambda r: r.chat_id == 501 and r.method == "sendDocument")
        assert answer.text and document.document == PDF
        assert document.filename == "document.pdf"
        async with services.sessions() as session:
            stored = await session.scalar(select(Attachment).where(Attachment.kind == "document"))
        assert stored.purpose == "answer" and stored.item_id == item.id
        assert services.files.path(stored.path).suffix == ".pdf"
    finally:
        await transport.stop()


async def test_a_citizens_file_is_refused_and_never_downloaded(tg, core, services, tmp_path):
    settings = Settings(telegram_token="123:TEST", telegram_api_url=tg.base_url,
                        data_dir=tmp_path / "data", _env_file=None)
    transport = TelegramTransport(settings, core)
    await transport.start()
    try:
        tg.user_message(777, "/start")
        await tg.wait_for(lambda r: r.chat_id == 777 and r.reply_markup is not None)
        tg.press_button(777, "consent:yes")
        await tg.wait_for(lambda r: r.chat_id == 777 and "согласие записано" in (r.text or ""))
        tg.user_message(777, document=PDF)
        await tg.wait_for(lambda r: r.chat_id == 777 and "не принимается" in (r.text or ""))
        assert tg.downloads == []
    finally:
        await transport.stop()
