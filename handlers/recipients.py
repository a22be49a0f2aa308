"""Who hears about an item: heads of its block, the assignee, bound group chats."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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


# ---------------------------------------------------------------------------------------------
# The same answers for a whole sweep, read once: a few hundred staff rows in memory instead of
# two queries per item.

@dataclass(frozen=True, slots=True)
class StaffChat:
    """One messenger account of a staff member, as a notification needs it."""

    account_id: int
    staff_id: int
    platform: str
    chat_id: str
    locale: str | None


@dataclass
class StaffDirectory:
    """Active staff by role and block, and every staff account, read in two queries."""

    org: Organisation
    by_role: dict[str, list[int]] = field(default_factory=dict)  # active, by id
    heads: dict[str, list[int]] = field(default_factory=dict)  # active heads by block
    chats: dict[int, list[StaffChat]] = field(default_factory=dict)  # by staff id
    _audiences: dict[tuple[int, ...], list[StaffChat]] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession, org: Organisation) -> StaffDirectory:
        directory = cls(org)
        for staff_id, role, block_id in (await session.execute(
                select(Staff.id, Staff.role, Staff.block_id)
                .where(Staff.revoked_at.is_(None)).order_by(Staff.id))).all():
            directory.by_role.setdefault(role, []).append(staff_id)
            if role == str(Role.HEAD) and block_id is not None:
                directory.heads.setdefault(block_id, []).append(staff_id)
        # Every account of every staff member, revoked ones too: an item's executor may have
        # left, and the per-item look-up (staff_accounts) did not ask either.
        for row in (await session.execute(
                select(Account.id, Account.staff_id, Account.platform, Account.chat_id,
                       Account.locale)
                .where(Account.staff_id.is_not(None)).order_by(Account.id))).all():
            chat = StaffChat(*row)
            directory.chats.setdefault(chat.staff_id, []).append(chat)
        return directory

    def with_role(self, role: Role) -> list[int]:
        return self.by_role.get(str(role), [])

    def block_leaders(self, block_id: str) -> list[int]:
        """As block_leader_ids: the block's heads, else the chairmen."""
        block = self.org.block_by_id.get(block_id)
        if block is not None and block.head_role == "head":
            heads = self.heads.get(block_id)
            if heads:
                return heads
        return self.with_role(Role.CHAIRMAN)

    def assignees(self, executor_id: int | None, taken_by_id: int | None,
                  block_id: str) -> list[int]:
        """As assignee_ids."""
        if executor_id is not None:
            return [executor_id]
        if taken_by_id is not None:
            return [taken_by_id]
        return self.block_leaders(block_id)

    def accounts(self, staff_ids: Iterable[int]) -> list[StaffChat]:
        """As staff_accounts: the accounts of these staff members in the order of account id;
        remembered per set of recipients (a sweep asks for the same few sets again and
        again)."""
        key = tuple(staff_ids)
        found = self._audiences.get(key)
        if found is None:
            found = sorted((chat for staff_id in dict.fromkeys(key)
                            for chat in self.chats.get(staff_id, ())),
                           key=lambda chat: chat.account_id)
            self._audiences[key] = found
        return found
