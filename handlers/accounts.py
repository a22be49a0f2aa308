"""Messenger accounts, consent records and dialog state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.events import ChatRef, UserRef
from handlers.i18n import normalise_locale
from storage.models import Account, Consent, DialogState


async def get_or_create_account(session: AsyncSession, user: UserRef, chat: ChatRef,
                                language_code: str | None, now: datetime) -> Account:
    account = await session.scalar(
        select(Account).where(Account.platform == str(user.platform),
                              Account.user_id == user.user_id))
    if account is None:
        # Only the technical identity is stored before consent: no name, no text.
        locale = "en" if normalise_locale(language_code) == "en" else "ru"
        account = Account(platform=str(user.platform), user_id=user.user_id,
                          chat_id=user.user_id, locale=locale, created_at=now)
        session.add(account)
        await session.flush()
    return account


async def active_consent(session: AsyncSession, account_id: int) -> Consent | None:
    return await session.scalar(
        select(Consent).where(Consent.account_id == account_id, Consent.withdrawn_at.is_(None))
        .order_by(Consent.id.desc()).limit(1))


IDLE = "idle"  # no dialog in progress


class Dialog:
    """The persisted dialog state of one account, locked for the duration of the turn."""

    def __init__(self, row: DialogState) -> None:
        self._row = row

    @classmethod
    async def load(cls, session: AsyncSession, account_id: int, now: datetime) -> Dialog:
        row = await session.scalar(select(DialogState).where(DialogState.account_id == account_id)
                                   .with_for_update())
        if row is None:
            row = DialogState(account_id=account_id, state=IDLE, data={}, updated_at=now)
            session.add(row)
        return cls(row)

    @property
    def state(self) -> str:
        return self._row.state

    @property
    def data(self) -> dict[str, Any]:
        return dict(self._row.data or {})

    def set(self, state: StrEnum | str, data: dict[str, Any] | None = None, *,
            now: datetime) -> None:
        # Each feature has its own Enum of states; the column keeps the plain value.
        self._row.state = state.value if isinstance(state, StrEnum) else state
        # A new dict object, so SQLAlchemy sees the JSON change.
        self._row.data = dict(data or {})
        self._row.updated_at = now

    def update(self, now: datetime, **changes: Any) -> None:
        self.set(self.state, {**self.data, **changes}, now=now)

    def reset(self, now: datetime) -> None:
        self.set(IDLE, {}, now=now)
