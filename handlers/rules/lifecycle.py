"""The item lifecycle as an explicit state machine.

Every transition is checked twice: is the action allowed from the current state, and may this
kind of actor do it. Who exactly (which head, which executor) is checked by the authorisation
rules on top of this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    REGISTERED = "registered"
    ASSIGNED = "assigned"              # routed to a block, nobody has taken it yet
    IN_PROGRESS = "in_progress"        # taken by the head or delegated to an executor
    WAITING_CITIZEN = "waiting_citizen"  # a clarification was asked
    REDIRECTED = "redirected"          # handed to another block, waiting to be taken there
    FORWARDED = "forwarded"            # outside competence, forwarded (59-ФЗ art. 8)
    EXTENDED = "extended"              # in progress with an extended deadline
    ON_APPROVAL = "on_approval"        # an executor's answer waits for the head/chairman
    ANSWERED = "answered"
    CLOSED = "closed"
    REWORK = "rework"                  # returned for rework by the chairman or the curator
    REOPENED = "reopened"              # the citizen was not satisfied
    REJECTED = "rejected"              # e.g. 59-ФЗ art. 11: no answer is given
    DUPLICATE = "duplicate"            # linked to another item


class Actor(StrEnum):
    SYSTEM = "system"
    CITIZEN = "citizen"
    OPERATOR = "operator"
    IM_COORDINATOR = "im_coordinator"
    HEAD = "head"
    EXECUTOR = "executor"
    CHAIRMAN = "chairman"
    CURATOR = "curator"
    PRESS = "press"


class Action(StrEnum):
    ROUTE = "route"
    TAKE = "take"
    DELEGATE = "delegate"
    ASK_CITIZEN = "ask_citizen"
    CITIZEN_REPLIED = "citizen_replied"
    REDIRECT = "redirect"
    EXTEND = "extend"
    FORWARD_OUTSIDE = "forward_outside"
    SUBMIT_ANSWER = "submit_answer"
    APPROVE = "approve"
    RETURN_WITH_REMARK = "return_with_remark"
    ANSWER = "answer"
    RETURN_FOR_REWORK = "return_for_rework"
    CLOSE = "close"
    REOPEN = "reopen"
    REJECT = "reject"
    MARK_DUPLICATE = "mark_duplicate"


S = Status
A = Actor

# States in which somebody is actively working on the item.
WORKING = frozenset({S.IN_PROGRESS, S.EXTENDED, S.REWORK, S.REOPENED})
# States in which the block has the item but nobody has taken it.
WAITING_TO_BE_TAKEN = frozenset({S.ASSIGNED, S.REDIRECTED})
OPEN_STATES = frozenset(
    {S.REGISTERED, S.ASSIGNED, S.IN_PROGRESS, S.WAITING_CITIZEN, S.REDIRECTED, S.EXTENDED,
     S.ON_APPROVAL, S.REWORK, S.REOPENED}
)
FINAL_STATES = frozenset({S.CLOSED, S.FORWARDED, S.REJECTED, S.DUPLICATE})
LEADERS = frozenset({A.HEAD, A.CHAIRMAN})


@dataclass(frozen=True)
class Rule:
    sources: frozenset[Status]
    target: Status | None  # None: the state does not change (e.g. an extension of an extension)
    actors: frozenset[Actor]


def _rule(sources: set[Status] | frozenset[Status], target: Status | None,
          actors: set[Actor] | frozenset[Actor]) -> Rule:
    return Rule(frozenset(sources), target, frozenset(actors))


TRANSITIONS: dict[Action, Rule] = {
    Action.ROUTE: _rule({S.REGISTERED}, S.ASSIGNED,
                        {A.SYSTEM, A.OPERATOR, A.IM_COORDINATOR, A.CHAIRMAN}),
    Action.TAKE: _rule(WAITING_TO_BE_TAKEN | {S.REOPENED, S.REWORK}, S.IN_PROGRESS,
                       LEADERS | {A.EXECUTOR}),
    Action.DELEGATE: _rule(WAITING_TO_BE_TAKEN | WORKING, S.IN_PROGRESS, LEADERS),
    Action.ASK_CITIZEN: _rule(WORKING, S.WAITING_CITIZEN, LEADERS | {A.EXECUTOR}),
    Action.CITIZEN_REPLIED: _rule({S.WAITING_CITIZEN}, S.IN_PROGRESS, {A.CITIZEN, A.SYSTEM}),
    Action.REDIRECT: _rule(WAITING_TO_BE_TAKEN | WORKING, S.REDIRECTED, LEADERS),
    Action.EXTEND: _rule(WAITING_TO_BE_TAKEN | WORKING, S.EXTENDED, LEADERS),
    Action.FORWARD_OUTSIDE: _rule(WAITING_TO_BE_TAKEN | WORKING, S.FORWARDED, LEADERS),
    # An executor's answer, or a head's answer that needs the chairman (appeals).
    Action.SUBMIT_ANSWER: _rule(WORKING, S.ON_APPROVAL, {A.EXECUTOR, A.HEAD}),
    Action.APPROVE: _rule({S.ON_APPROVAL}, S.ANSWERED, LEADERS),
    Action.RETURN_WITH_REMARK: _rule({S.ON_APPROVAL}, S.IN_PROGRESS, LEADERS),
    Action.ANSWER: _rule(WAITING_TO_BE_TAKEN | WORKING, S.ANSWERED, LEADERS),
    Action.RETURN_FOR_REWORK: _rule({S.ANSWERED}, S.REWORK, {A.CHAIRMAN, A.CURATOR}),
    Action.CLOSE: _rule({S.ANSWERED}, S.CLOSED, {A.CITIZEN, A.SYSTEM, A.CHAIRMAN}),
    Action.REOPEN: _rule({S.ANSWERED, S.CLOSED}, S.REOPENED, {A.CITIZEN, A.SYSTEM, A.CHAIRMAN}),
    Action.REJECT: _rule({S.REGISTERED} | WAITING_TO_BE_TAKEN | WORKING, S.REJECTED,
                         LEADERS | {A.OPERATOR, A.IM_COORDINATOR}),
    Action.MARK_DUPLICATE: _rule({S.REGISTERED} | WAITING_TO_BE_TAKEN | WORKING, S.DUPLICATE,
                                 LEADERS),
}


class TransitionError(Exception):
    def __init__(self, reason: str, action: Action, status: Status, actor: Actor) -> None:
        super().__init__(f"{action} by {actor} is not allowed from {status}: {reason}")
        self.reason = reason  # "state" or "actor"
        self.action = action
        self.status = status
        self.actor = actor


def check(action: Action, status: Status, actor: Actor) -> Status:
    """Return the state after `action`, or raise TransitionError."""
    rule = TRANSITIONS[action]
    if status not in rule.sources:
        raise TransitionError("state", action, status, actor)
    if actor not in rule.actors:
        raise TransitionError("actor", action, status, actor)
    return rule.target or status


def allowed(action: Action, status: Status, actor: Actor) -> bool:
    try:
        check(action, status, actor)
    except TransitionError:
        return False
    return True
