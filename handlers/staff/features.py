"""Staff features that own a command, a payload prefix and dialog states (/register, /stats).

Each feature module defines its FEATURE; the list of them is assembled in one place,
handlers/staff_features.py, and the staff dialog routes to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers.events import IncomingMessage
from handlers.org import Role
from handlers.turn import Turn
from storage.models import Staff


@dataclass(frozen=True)
class Feature:
    command: str  # "/register" without the slash
    payload_prefix: str  # button payloads "PREFIX:..." belong to the feature
    state_prefix: str  # dialog states "PREFIX..." belong to the feature
    roles: frozenset[Role]  # who may use it; others get a refusal
    start: Callable[[Turn, Staff, str], Awaitable[None]]  # (turn, staff, command argument)
    on_message: Callable[[Turn, Staff, IncomingMessage], Awaitable[None]]
    on_button: Callable[[Turn, Staff, str], Awaitable[None]]  # the raw payload: it unpacks it

