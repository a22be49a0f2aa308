"""Files attached to a staff answer: decided and downloaded before the turn (handlers/prepare),
recorded during it."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.events import IncomingMessage
from handlers.turn import Turn
from storage.models import Account, Attachment, DialogState, Staff


class StaffState(StrEnum):
    INPUT = "staff_input"  # a typed input after a card button (an answer, a question…)


ANSWER_INPUT = StaffState.INPUT


async def wants_answer_document(session: AsyncSession, message: IncomingMessage) -> bool:
    """Is the sender a staff member in the middle of writing an answer? Only then is a file
    downloaded: a citizen's file, or a file sent at any other step, never is."""
    row = (await session.execute(
        select(DialogState.state, DialogState.data)
        .join(Account, Account.id == DialogState.account_id)
        .join(Staff, Staff.id == Account.staff_id)
        .where(Account.platform == str(message.user.platform),
               Account.user_id == message.user.user_id, Staff.revoked_at.is_(None)))).first()
    return row is not None and row.state == ANSWER_INPUT and (row.data or {}).get("op") == "answer"


async def store_document(turn: Turn) -> str | None:
    """Record the file fetched for this answer; returns the text key of the problem, if any."""
    prepared = turn.prepared
    if prepared.document_problem:
        return prepared.document_problem
    saved = prepared.document
    if saved is None:  # the turn began somewhere the file was not wanted
        return "staff.document_failed"
    turn.keep_prepared(saved.path)
    attachment = Attachment(purpose="answer", kind="document", path=saved.path, mime=saved.mime,
                            size=saved.size, filename=saved.filename[:255],
                            source_platform=str(turn.account.platform), created_at=turn.now)
    turn.session.add(attachment)
    await turn.session.flush()
    turn.dialog.update(turn.now, photos=[*turn.dialog.data.get("photos", []), attachment.id])
    return None
