"""The statements of a dialog turn: the processed-update mark and the one joined read of
who is writing (account, active consent, dialog state)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Account, Consent, DialogState, ProcessedUpdate
from storage.sqlfuncs import on_conflict_insert


async def claim_update(session: AsyncSession, platform: str, update_key: str,
                       now: datetime) -> bool:
    """Mark the update as processed; False when it was already (a redelivery, the other
    process). One statement, no SAVEPOINT: the insert does nothing on a conflict, and a
    concurrent transaction marking the same key waits for this one and then does nothing."""
    statement = _mark_statement(session.bind.dialect.name)
    parameters = {"platform": platform, "update_key": update_key, "processed_at": now}
    return (await session.execute(statement, parameters)).first() is not None


async def load_writer(session: AsyncSession, platform: str, user_id: str
                      ) -> tuple[Account | None, DialogState | None, Consent | None]:
    """The account with its dialog state and its active consent, in one statement. The
    account row is locked for the transaction (PostgreSQL; SQLite's write lock is global),
    which keeps one user's turns, and anything else changing their dialog, in order."""
    row = (await session.execute(_WRITER, {"platform": platform, "user_id": user_id})).first()
    if row is None:
        return None, None, None
    return row[0], row[1], row[2]


# The statements of every turn are built once (building one cost about as much as running
# it); their values are bound at execution.

@lru_cache(maxsize=2)
def _mark_statement(dialect: str) -> Any:
    return (on_conflict_insert(dialect)(ProcessedUpdate)
            .values(platform=bindparam("platform"), update_key=bindparam("update_key"),
                    processed_at=bindparam("processed_at"))
            .on_conflict_do_nothing(index_elements=[ProcessedUpdate.platform,
                                                    ProcessedUpdate.update_key])
            .returning(ProcessedUpdate.update_key))


_LATEST_CONSENT = (select(func.max(Consent.id))
                   .where(Consent.account_id == Account.id, Consent.withdrawn_at.is_(None))
                   .correlate(Account).scalar_subquery())
_WRITER = (select(Account, DialogState, Consent)
           .outerjoin(DialogState, DialogState.account_id == Account.id)
           .outerjoin(Consent, Consent.id == _LATEST_CONSENT)
           .where(Account.platform == bindparam("platform"),
                  Account.user_id == bindparam("user_id"))
           .with_for_update(of=Account))
