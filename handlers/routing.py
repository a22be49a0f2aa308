"""Routing a pressed button to its feature: each feature module has a Router of its payload
types; the lists of routers are assembled in one place per audience (citizen, staff)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from handlers.payloads import Payload, unpack_any

C = TypeVar("C")  # what a handler works on: the turn, or the turn and the staff member
P = TypeVar("P", bound=Payload)
Handler = Callable[[C, Any], Awaitable[bool]]  # False: the button does not fit now (stale)


@dataclass
class Router(Generic[C]):
    name: str
    routes: dict[type[Payload], Handler[C]] = field(default_factory=dict)

    def on(self, kind: type[P]) -> Callable[[Callable[[C, P], Awaitable[bool]]],
                                             Callable[[C, P], Awaitable[bool]]]:
        def register(handler: Callable[[C, P], Awaitable[bool]]) -> Callable[[C, P],
                                                                              Awaitable[bool]]:
            if kind in self.routes:
                raise ValueError(f"{kind.__name__} is routed twice in {self.name}")
            self.routes[kind] = handler
            return handler
        return register


def payload_kinds(routers: Iterable[Router[Any]]) -> list[type[Payload]]:
    return [kind for router in routers for kind in router.routes]


def unpack(raw: str, routers: Iterable[Router[Any]]) -> Payload | None:
    return unpack_any(raw, payload_kinds(routers))


async def dispatch(context: C, payload: Payload, routers: Iterable[Router[C]]) -> bool:
    for router in routers:
        handler = router.routes.get(type(payload))
        if handler is not None:
            return await handler(context, payload)
    return False
