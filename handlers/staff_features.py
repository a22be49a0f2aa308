"""The staff features plugged into the staff chat, listed in one place (no import side effects):
a feature owns a command, a payload prefix and dialog states (handlers/staff/features.py)."""

from __future__ import annotations

from handlers.analytics import chat as stats
from handlers.operator import register
from handlers.staff.features import Feature

FEATURES: tuple[Feature, ...] = (register.FEATURE, stats.FEATURE)


def by_command(command: str) -> Feature | None:
    return next((f for f in FEATURES if f.command == command), None)


def by_payload(prefix: str) -> Feature | None:
    return next((f for f in FEATURES if f.payload_prefix == prefix), None)


def by_state(state: str) -> Feature | None:
    return next((f for f in FEATURES if state.startswith(f.state_prefix)), None)
