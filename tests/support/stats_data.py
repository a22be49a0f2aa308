"""A small dataset with hand-computed statistics (see the table in tests/test_stats.py).

Times are written in Okha local time (UTC+11); several items sit just after a local midnight,
which is still the previous day in UTC, so a grouping that forgot the time zone fails.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from handlers.context import Services
from storage.models import Citizen, Cluster, Item, Staff

SAKHALIN = ZoneInfo("Asia/Sakhalin")
# The statistics are asked for "now": 10 December 2026, noon in Okha.
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=SAKHALIN)
_numbers = itertools.count(1)


def local(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=SAKHALIN)


@dataclass
class Seeded:
    items: dict[str, Item]
    executors: dict[str, Staff]
    cluster: Cluster
    small_cluster: Cluster
    citizen_name: str


def _item(services: Services, created: datetime, **fields: object) -> Item:
    topic = str(fields.get("topic", "roads"))
    values: dict[str, object] = dict(
        number=f"2026-{next(_numbers):06d}", kind="message", channel="telegram",
        status="assigned", topic=topic, block_id=services.org.block_of_topic[topic].id,
        text="Описание проблемы", received_at=created, registered_at=created,
        created_at=created, updated_at=created, extension_count=0, reopened_count=0,
        no_answer=False)
    values.update(fields)
    return Item(**values)


async def seed(services: Services) -> Seeded:
    """Items A-F in November 2026 (local), G just before it, H just after it."""
    h = timedelta(hours=1)
    async with services.sessions() as session, session.begin():
        citizen = Citizen(name="Мария Иванова", phone="+7 900 000-00-00", created_at=NOW)
        e1 = Staff(role="executor", block_id="housing", name="Инженер Петров", created_at=NOW)
        e2 = Staff(role="executor", block_id="culture_sport", name="Методист Сидорова",
                   created_at=NOW)
        cluster = Cluster(topic="roads", label="ленина 12а", created_at=NOW)
        small = Cluster(topic="culture", label="советская 5", created_at=NOW)
        session.add_all([citizen, e1, e2, cluster, small])
        await session.flush()
        a_at, b_at = local("2026-11-01", 5), local("2026-11-03", 9)
        c_at = local("2026-11-05", 0, 30)
        e_at, f_at = local("2026-11-09", 5), local("2026-11-16", 12)
        items = {
            "A": _item(services, a_at, status="answered", executor_id=e1.id,
                       first_reaction_at=a_at + 2 * h, answered_at=a_at + 10 * h,
                       answer_due=local("2026-11-10", 23, 59), rating=5, satisfaction="yes",
                       cluster_id=cluster.id, citizen_id=citizen.id),
            "B": _item(services, b_at, channel="vk", status="closed",
                       first_reaction_at=b_at + 4 * h, answered_at=b_at + 30 * h,
                       answer_due=local("2026-11-03", 20), rating=2, satisfaction="no",
                       reopened_count=1, cluster_id=cluster.id),
            "C": _item(services, c_at, status="in_progress", executor_id=e1.id,
                       first_reaction_at=c_at + h, answer_due=local("2026-11-20", 23, 59),
                       cluster_id=cluster.id),
            "D": _item(services, local("2026-11-05", 23, 30), topic="housing", channel="pos",
                       kind="appeal", status="assigned", answer_due=local("2026-12-15", 23, 59)),
            "E": _item(services, e_at, topic="culture", status="answered", executor_id=e2.id,
                       first_reaction_at=e_at + 3 * h, answered_at=e_at + 6 * h,
                       answer_due=local("2026-11-20", 23, 59), rating=4,
                       cluster_id=small.id),
            "F": _item(services, f_at, topic="culture", channel="incident_management",
                       kind="incident", status="closed", executor_id=e2.id,
                       first_reaction_at=f_at + 5 * h, answered_at=f_at + 20 * h,
                       answer_due=local("2026-11-17", 23, 59), rating=3, satisfaction="partly",
                       reopened_count=2, cluster_id=small.id),
            "G": _item(services, local("2026-10-31", 23), topic="other", status="registered",
                       answer_due=local("2026-11-14", 23, 59)),
            "H": _item(services, local("2026-12-01", 0, 30), status="assigned",
                       answer_due=local("2026-12-15", 23, 59)),
        }
        session.add_all(items.values())
    return Seeded(items=items, executors={"E1": e1, "E2": e2}, cluster=cluster,
                  small_cluster=small, citizen_name="Мария Иванова")
