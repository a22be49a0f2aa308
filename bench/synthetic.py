"""Plausible synthetic items for the benchmark and the README example (not for tests).

Deterministic for a seed. Rows are dicts of the items table's columns with aware UTC datetimes;
`as_sqlite` turns one into the text form SQLAlchemy stores in SQLite.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.org import Organisation
from storage.rollups import whole_seconds

TOPICS = {"housing": 26, "roads": 18, "energy": 10, "waste": 10, "transport": 7, "other": 6,
          "social_protection": 4, "healthcare": 4, "education": 3, "construction": 3,
          "land": 2, "property": 2, "trade": 2, "sport": 1, "culture": 1, "guardianship": 1}
CHANNELS = {"telegram": 38, "vk": 30, "pos": 10, "incident_management": 10,
            "sakhalin_online": 3, "smls": 2, "phone": 4, "letter": 2, "visit": 1}
OPEN = ("assigned", "in_progress", "waiting_citizen", "extended", "on_approval", "reopened")
STREETS = ("Ленина", "Советская", "Дзержинского", "Красноармейская", "Блюхера", "Комсомольская",
           "Карла Маркса", "Пионерская", "Вокзальная", "Школьная")
OKHA = (53.5739, 142.9478)
COLUMNS = ("number", "kind", "channel", "status", "topic", "block_id", "text", "address",
           "latitude", "longitude", "executor_id", "received_at", "registered_at", "created_at",
           "updated_at", "answer_due", "first_reaction_at", "answered_at", "closed_at",
           "rating", "satisfaction", "reopened_count", "extension_count", "no_answer",
           "cluster_id", "place_key", "first_reaction_seconds", "answer_seconds")


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def items(org: Organisation, count: int, start: datetime, end: datetime, *, now: datetime,
          executors: dict[str, list[int]], clusters: int = 0, seed: int = 7,
          ) -> Iterator[dict[str, Any]]:
    """`count` items created between start and end, in creation order."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    moments = sorted(rng.random() * span for _ in range(count))
    for number, offset in enumerate(moments, start=1):
        created = start + timedelta(seconds=offset)
        topic, channel = _pick(rng, TOPICS), _pick(rng, CHANNELS)
        kind = ("incident" if channel == "incident_management"
                else "appeal" if channel in ("letter", "visit") or rng.random() < 0.1
                else "message")
        received = created - timedelta(minutes=rng.randint(0, 90))
        allowed = {"incident": 1.5, "message": 14, "appeal": 30}[kind]
        due = received + timedelta(days=allowed)
        reaction = (received + timedelta(hours=rng.expovariate(1 / 6))
                    if rng.random() < 0.93 else None)
        # Most items are answered within their deadline; some late, the youngest still open.
        answer_days = rng.lognormvariate(0, 0.6) * allowed * 0.45
        answered = received + timedelta(days=answer_days)
        status, rating, satisfaction, closed = "answered", None, None, None
        if answered > now:
            answered, status = None, rng.choice(OPEN)
        elif rng.random() < 0.7:
            status, closed = "closed", answered + timedelta(days=rng.uniform(0, 3))
            if rng.random() < 0.6:
                rating = rng.choices((1, 2, 3, 4, 5), weights=(6, 8, 14, 30, 42))[0]
                satisfaction = ("yes" if rating >= 4 else "partly" if rating == 3 else "no")
        block = org.block_of_topic[topic].id
        staff = executors.get(block) or []
        street = rng.choice(STREETS)
        house = rng.randint(1, 60)
        cluster = rng.randint(1, clusters) if clusters and rng.random() < 0.06 else None
        located = rng.random() < 0.5
        yield {
            "number": f"B-{number:07d}", "kind": kind, "channel": channel, "status": status,
            "topic": topic, "block_id": block, "text": "Синтетическое сообщение",
            "address": None if located else f"ул. {street}, д. {house}",
            "latitude": OKHA[0] + rng.uniform(-0.02, 0.02) if located else None,
            "longitude": OKHA[1] + rng.uniform(-0.03, 0.03) if located else None,
            "executor_id": rng.choice(staff) if staff and rng.random() < 0.6 else None,
            "received_at": received, "registered_at": created, "created_at": created,
            "updated_at": created, "answer_due": due, "first_reaction_at": reaction,
            "answered_at": answered, "closed_at": closed, "rating": rating,
            "satisfaction": satisfaction,
            "reopened_count": 1 if answered and rng.random() < 0.05 else 0,
            "extension_count": 0, "no_answer": False, "cluster_id": cluster,
            "place_key": None if located else f"{street.lower()} {house}",
            "first_reaction_seconds": whole_seconds(reaction, received),
            "answer_seconds": whole_seconds(answered, received),
        }


def as_sqlite(row: dict[str, Any]) -> tuple[Any, ...]:
    """The row as SQLAlchemy stores it in SQLite: naive UTC datetimes as ISO text."""
    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            naive = v.astimezone(UTC).replace(tzinfo=None)
            return naive.isoformat(sep=" ", timespec="microseconds")
        return v
    return tuple(value(row[c]) for c in COLUMNS)


def as_postgres(row: dict[str, Any]) -> tuple[Any, ...]:
    """The row for COPY into PostgreSQL: naive UTC datetimes."""
    return tuple(v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime) else v
                 for v in (row[c] for c in COLUMNS))
