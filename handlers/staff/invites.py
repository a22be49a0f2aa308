"""One-time invitation codes that bind a messenger account to a staff record."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.org import BLOCK_ROLES, Organisation, Role
from storage.models import Account, Invite, Staff

INVITE_TTL = timedelta(hours=72)


class InviteError(ValueError):
    """Why an invite cannot be created or used; `reason` is a text key suffix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_role(org: Organisation, role: str, block_id: str | None) -> Role:
    try:
        parsed = Role(role)
    except ValueError as exc:
        raise InviteError("unknown_role") from exc
    if parsed in BLOCK_ROLES and not block_id:
        raise InviteError("block_required")
    if block_id is not None and block_id not in org.block_by_id:
        raise InviteError("unknown_block")
    if parsed not in BLOCK_ROLES and block_id:
        raise InviteError("block_not_allowed")
    return parsed


async def create_invite(session: AsyncSession, org: Organisation, role: str,
                        block_id: str | None, name: str | None, now: datetime,
                        created_by: int | None = None) -> Invite:
    parsed = validate_role(org, role, block_id)
    invite = Invite(code=secrets.token_urlsafe(12), role=str(parsed), block_id=block_id,
                    name=name, created_at=now, expires_at=now + INVITE_TTL,
                    created_by_staff_id=created_by)
    session.add(invite)
    await session.flush()
    return invite


@dataclass
class Redeemed:
    staff: Staff
    invite: Invite


async def redeem_invite(session: AsyncSession, account: Account, code: str,
                        now: datetime) -> Redeemed:
    invite = await session.scalar(select(Invite).where(Invite.code == code))
    if invite is None:
        raise InviteError("unknown_code")
    if invite.used_at is not None:
        raise InviteError("used")
    if invite.expires_at <= now:
        raise InviteError("expired")
    # A conditional update: two accounts racing for one code, only one wins.
    result = await session.execute(update(Invite).where(Invite.id == invite.id,
                                                        Invite.used_at.is_(None))
                                   .values(used_at=now))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise InviteError("used")
    staff = Staff(role=invite.role, block_id=invite.block_id, name=invite.name, created_at=now)
    session.add(staff)
    await session.flush()
    invite.staff_id = staff.id
    account.staff_id = staff.id
    return Redeemed(staff=staff, invite=invite)


async def revoke_staff(session: AsyncSession, staff_id: int, now: datetime) -> bool:
    staff = await session.get(Staff, staff_id)
    if staff is None or staff.revoked_at is not None:
        return False
    staff.revoked_at = now
    await session.execute(update(Account).where(Account.staff_id == staff_id)
                          .values(staff_id=None))
    return True
