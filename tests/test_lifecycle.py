"""Every allowed and every forbidden transition of the item lifecycle."""

from __future__ import annotations

import itertools

import pytest

from handlers.rules.lifecycle import (
    FINAL_STATES,
    TRANSITIONS,
    Action,
    Actor,
    Status,
    TransitionError,
    allowed,
    check,
)

# The expected table, written out independently of the implementation's sets, so a change in
# one place without the other fails here.
LEAD = {Actor.HEAD, Actor.CHAIRMAN}
TAKEABLE = {Status.ASSIGNED, Status.REDIRECTED}
WORKING = {Status.IN_PROGRESS, Status.EXTENDED, Status.REWORK, Status.REOPENED}
EXPECTED: dict[Action, tuple[set[Status], Status, set[Actor]]] = {
    Action.ROUTE: ({Status.REGISTERED}, Status.ASSIGNED,
                   {Actor.SYSTEM, Actor.OPERATOR, Actor.IM_COORDINATOR, Actor.CHAIRMAN}),
    Action.TAKE: (TAKEABLE | {Status.REOPENED, Status.REWORK}, Status.IN_PROGRESS,
                  LEAD | {Actor.EXECUTOR}),
    Action.DELEGATE: (TAKEABLE | WORKING, Status.IN_PROGRESS, LEAD),
    Action.ASK_CITIZEN: (WORKING, Status.WAITING_CITIZEN, LEAD | {Actor.EXECUTOR}),
    Action.CITIZEN_REPLIED: ({Status.WAITING_CITIZEN}, Status.IN_PROGRESS,
                             {Actor.CITIZEN, Actor.SYSTEM}),
    Action.REDIRECT: (TAKEABLE | WORKING, Status.REDIRECTED, LEAD),
    Action.EXTEND: (TAKEABLE | WORKING, Status.EXTENDED, LEAD),
    Action.FORWARD_OUTSIDE: (TAKEABLE | WORKING, Status.FORWARDED, LEAD),
    Action.SUBMIT_ANSWER: (WORKING, Status.ON_APPROVAL, {Actor.EXECUTOR, Actor.HEAD}),
    Action.APPROVE: ({Status.ON_APPROVAL}, Status.ANSWERED, LEAD),
    Action.RETURN_WITH_REMARK: ({Status.ON_APPROVAL}, Status.IN_PROGRESS, LEAD),
    Action.ANSWER: (TAKEABLE | WORKING, Status.ANSWERED, LEAD),
    Action.RETURN_FOR_REWORK: ({Status.ANSWERED}, Status.REWORK,
                               {Actor.CHAIRMAN, Actor.CURATOR}),
    Action.CLOSE: ({Status.ANSWERED}, Status.CLOSED,
                   {Actor.CITIZEN, Actor.SYSTEM, Actor.CHAIRMAN}),
    Action.REOPEN: ({Status.ANSWERED, Status.CLOSED}, Status.REOPENED,
                    {Actor.CITIZEN, Actor.SYSTEM, Actor.CHAIRMAN}),
    Action.REJECT: ({Status.REGISTERED} | TAKEABLE | WORKING, Status.REJECTED,
                    LEAD | {Actor.OPERATOR, Actor.IM_COORDINATOR}),
    Action.MARK_DUPLICATE: ({Status.REGISTERED} | TAKEABLE | WORKING, Status.DUPLICATE, LEAD),
}

CASES = list(itertools.product(Action, Status, Actor))


def test_every_action_has_a_rule():
    assert set(TRANSITIONS) == set(EXPECTED) == set(Action)


@pytest.mark.parametrize(("action", "status", "actor"), CASES,
                         ids=[f"{a}-{s}-{r}" for a, s, r in CASES])
def test_transition(action: Action, status: Status, actor: Actor):
    sources, target, actors = EXPECTED[action]
    if status in sources and actor in actors:
        assert check(action, status, actor) == target
        return
    with pytest.raises(TransitionError) as error:
        check(action, status, actor)
    # The state is checked first: a wrong state is reported as such whoever asks.
    assert error.value.reason == ("state" if status not in sources else "actor")
    assert not allowed(action, status, actor)


@pytest.mark.parametrize("status", sorted(FINAL_STATES - {Status.CLOSED}))
def test_final_states_accept_nothing(status: Status):
    assert not any(allowed(action, status, actor) for action in Action for actor in Actor)


def test_a_closed_item_can_only_be_reopened():
    possible = {action for action in Action for actor in Actor
                if allowed(action, Status.CLOSED, actor)}
    assert possible == {Action.REOPEN}


def test_press_and_citizen_cannot_touch_the_work():
    for action in Action:
        for status in Status:
            assert not allowed(action, status, Actor.PRESS)
            if action not in (Action.CITIZEN_REPLIED, Action.CLOSE, Action.REOPEN):
                assert not allowed(action, status, Actor.CITIZEN)
