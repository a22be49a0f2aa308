"""Nothing slow happens inside a turn's transaction: on SQLite its write lock stops everybody."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from handlers.events import ChatRef, IncomingDocument, IncomingMessage, Platform, UserRef
from storage.models import Attachment
from tests.support.chat import ChatClient, join_as
from tests.test_staff_core import item, report

SIZE = 20 * 1024 * 1024
DOWNLOAD_SECONDS = 10.0


async def test_a_slow_document_download_does_not_hold_up_other_chats(core, services):
    head = await join_as(core, "head", "housing", user_id="1001", name="ЖКХ")
    await report(ChatClient(core, user_id="501"))
    answered = await item(services)
    await head.press(f"s:answer:{answered.id}")
    assert "Напишите ответ" in head.texts()

    downloading = asyncio.Event()

    async def slow_fetch() -> bytes:
        downloading.set()
        await asyncio.sleep(DOWNLOAD_SECONDS)
        return b"%PDF-1.4 " + b"0" * (SIZE - 9)

    document = IncomingMessage(
        update_key="doc-1", user=UserRef(Platform.TELEGRAM, "1001"),
        chat=ChatRef(Platform.TELEGRAM, "1001"),
        document=IncomingDocument("act.pdf", "application/pdf", SIZE, slow_fetch))
    upload = asyncio.create_task(core.handle(document))
    await asyncio.wait_for(downloading.wait(), 5)

    # Another citizen writes while the file is still downloading: answered at once.
    other = ChatClient(core, user_id="777")
    started = time.monotonic()
    response = await other.send("/start")
    assert time.monotonic() - started < 1.0
    assert response.replies and not upload.done()

    stored = await upload
    assert any("сохранено" in reply.text for reply in stored.replies)
    async with services.sessions() as session:
        attachment = await session.scalar(select(Attachment).where(Attachment.kind == "document"))
    assert attachment is not None and attachment.size == SIZE
    assert services.files.path(attachment.path).stat().st_size == SIZE
