"""Who hears about an item: heads of its block, the assignee, bound group chats."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.events import ChatRef, Platform
from handlers.org import Organisation, Role
from storage.models import Account, GroupBinding, Item, Staff


async def staff_ids_with_role(session: AsyncSession, role: Role,
                              block_id: str | None = None) -> list[int]:
    query = select(Staff.id).where(Staff.role == str(role), Staff.revoked_at.is_(None))
    if block_id is not None:
        query = query.where(Staff.block_id == block_id)
    return list((await session.scalars(query.order_by(Staff.id))).all())


async def block_leader_ids(session: AsyncSession, org: Organisation, block_id: str) -> list[int]:
    """The heads of a block; the chairman for the chairman's own queue, or when the block has
    no head yet, so that nothing is routed into the void."""
    block = org.block_by_id.get(block_id)
    if block is not None and block.head_role == "head":
        heads = await staff_ids_with_role(session, Role.HEAD, block_id)
        if heads:
            return heads
    return await staff_ids_with_role(session, Role.CHAIRMAN)


async def assignee_ids(session: AsyncSession, org: Organisation, item: Item) -> list[int]:
    if item.executor_id is not None:
        return [item.executor_id]
    if item.taken_by_id is not None:
        return [item.taken_by_id]
    return await block_leader_ids(session, org, item.block_id)


async def staff_accounts(session: AsyncSession, staff_ids: Iterable[int]) -> list[Account]:
    ids = list(dict.fromkeys(staff_ids))
    if not ids:
        return []
    rows = await session.scalars(select(Account).where(Account.staff_id.in_(ids))
                                 .order_by(Account.id))
    return list(rows.all())


def chat_of(account: Account) -> ChatRef:
    return ChatRef(Platform(account.platform), account.chat_id)


async def group_chats(session: AsyncSession, purpose: str, block_id: str = "") -> list[ChatRef]:
    rows = await session.scalars(select(GroupBinding).where(GroupBinding.purpose == purpose,
                                                            GroupBinding.block_id == block_id))
    return [ChatRef(Platform(row.platform), row.chat_id) for row in rows.all()]
