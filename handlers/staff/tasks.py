"""/tasks: the open items a staff member is responsible for, nearest deadline first."""

from __future__ import annotations

from sqlalchemy import Select, func, or_, select

from handlers.events import Button, Reply
from handlers.formatting import local_date, status_label
from handlers.org import Role
from handlers.rules.lifecycle import OPEN_STATES
from handlers.staff.authz import SEES_EVERYTHING
from handlers.staff.payloads import CardAction, CardOp, TaskFilter, Tasks
from handlers.turn import Turn
from storage.models import Item, Staff

PAGE = 8
FILTERS = tuple(f.value for f in TaskFilter)


def scoped(query: Select, staff: Staff) -> Select:  # type: ignore[type-arg]
    role = Role(staff.role)
    if role in SEES_EVERYTHING:
        return query
    if role == Role.HEAD:
        return query.where(Item.block_id == staff.block_id)
    if role == Role.EXECUTOR:
        return query.where(Item.executor_id == staff.id)
    if role == Role.OPERATOR:
        return query.where(Item.registered_by_id == staff.id)
    return query.where(Item.id.is_(None))  # the press service: no items


async def tasks_reply(turn: Turn, staff: Staff, kind: str, page: int) -> Reply:
    t, now, tz = turn.t, turn.now, turn.services.tz
    kind = kind if kind in FILTERS else "all"
    query = scoped(select(Item).where(Item.status.in_([str(s) for s in OPEN_STATES])), staff)
    if kind == "mine":
        query = query.where(or_(Item.executor_id == staff.id, Item.taken_by_id == staff.id))
    elif kind == "block" and staff.block_id:
        query = query.where(Item.block_id == staff.block_id)
    elif kind == "overdue":
        query = query.where(Item.answer_due < now)
    total = await turn.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = max(0, min(page, (total - 1) // PAGE if total else 0))
    items = (await turn.session.scalars(
        query.order_by(Item.answer_due.is_(None), Item.answer_due, Item.id)
        .offset(page * PAGE).limit(PAGE))).all()
    lines = []
    for item in items:
        overdue = item.answer_due is not None and item.answer_due < now
        lines.append(t("tasks.line", mark="🔴" if overdue else "•", number=item.number,
                       topic=turn.services.org.topic_by_id[item.topic].label(t.locale),
                       status=status_label(t, item.status),
                       due=local_date(item.answer_due, tz)))
    text = "\n".join(lines) if lines else t("tasks.empty")
    buttons = [Button(item.number, CardAction(CardOp.CARD, item.id).pack()) for item in items]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    rows.append([Button(("✓ " if kind == f else "") + t(f"tasks.filter.{f}"),
                        Tasks(TaskFilter(f), 0).pack()) for f in FILTERS])
    navigation = []
    if page > 0:
        navigation.append(Button(t("tasks.prev"), Tasks(TaskFilter(kind), page - 1).pack()))
    if (page + 1) * PAGE < total:
        navigation.append(Button(t("tasks.next"), Tasks(TaskFilter(kind), page + 1).pack()))
    if navigation:
        rows.append(navigation)
    pages = max(1, (total + PAGE - 1) // PAGE)
    return Reply(text, title=t("tasks.title", filter=t(f"tasks.filter.{kind}"), total=total,
                               page=page + 1, pages=pages), buttons=rows)
