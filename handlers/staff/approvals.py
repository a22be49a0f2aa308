"""Approving an answer, and marking an outside channel's answer as published there."""

from __future__ import annotations

from handlers.routing import Router
from handlers.staff import actions
from handlers.staff.chat import StaffTurn, require_item
from handlers.staff.payloads import Approve, Published

router: Router[StaffTurn] = Router("approvals")


@router.on(Approve)
async def on_approve(st: StaffTurn, payload: Approve) -> bool:
    turn, item = st.turn, await require_item(st, payload.item_id)
    outcome = await actions.approve(turn.session, turn.services, st.staff, item)
    turn.say(f"staff.approve_{outcome}", number=item.number)
    return True


@router.on(Published)
async def on_published(st: StaffTurn, payload: Published) -> bool:
    turn, item = st.turn, await require_item(st, payload.item_id)
    await actions.mark_published(turn.session, turn.services, st.staff, item)
    turn.say("staff.published", number=item.number)
    return True
