"""Who may see and do what with an item (59-ФЗ art. 6: the chain of responsibility).

Every check runs on the server with fresh data: the role, the block, the assignment and the
state. A button's payload only names what was asked for.
"""

from __future__ import annotations

import logging

from handlers.org import Role
from handlers.rules.lifecycle import Action, Actor, allowed
from storage.models import Item, Staff

log = logging.getLogger("mcu.authz")

ACTOR_OF_ROLE = {
    Role.CURATOR: Actor.CURATOR, Role.CHAIRMAN: Actor.CHAIRMAN,
    Role.IM_COORDINATOR: Actor.IM_COORDINATOR, Role.PRESS: Actor.PRESS, Role.HEAD: Actor.HEAD,
    Role.EXECUTOR: Actor.EXECUTOR, Role.OPERATOR: Actor.OPERATOR,
}
SEES_EVERYTHING = frozenset({Role.CURATOR, Role.CHAIRMAN, Role.IM_COORDINATOR})


def actor_of(staff: Staff) -> Actor:
    return ACTOR_OF_ROLE[Role(staff.role)]


def can_see(staff: Staff, item: Item) -> bool:
    role = Role(staff.role)
    if role in SEES_EVERYTHING:
        return True
    if role == Role.HEAD:
        return item.block_id == staff.block_id
    if role == Role.EXECUTOR:
        return item.executor_id == staff.id
    if role == Role.OPERATOR:
        return item.registered_by_id == staff.id
    return False  # the press service sees statistics, not items


def can_do(staff: Staff, item: Item, action: Action) -> bool:
    """Role, block, assignment and state, all at once."""
    if staff.revoked_at is not None or not can_see(staff, item):
        return False
    role = Role(staff.role)
    if role == Role.IM_COORDINATOR and action not in (Action.ROUTE, Action.REJECT):
        return False  # the IM coordinator watches; the block does the work
    return allowed(action, item.status_enum, actor_of(staff))


def refuse(staff_id: int | None, what: str, item_id: int | None) -> None:
    """Log a refused attempt: who and what, never the message text."""
    log.warning("refused %s by staff %s on item %s", what, staff_id, item_id)
