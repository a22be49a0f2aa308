"""SQL helpers for clusters of repeated problems (the rules are in handlers/analytics/clusters.py).

A cluster is kept in the database: each item joins one when it is registered, so grouping the
statistics by cluster is a plain GROUP BY, and a cluster is announced to the press once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Cluster, Item

METRES_PER_DEGREE = 111_195.0  # of latitude, on the sphere of radius 6371 km
BOX_MARGIN = 1.01  # the box is a pre-filter: a little wider never loses a neighbour


@dataclass(frozen=True)
class Candidate:
    id: int
    cluster_id: int | None
    latitude: float | None
    longitude: float | None
    place_key: str | None


async def candidates(session: AsyncSession, item: Item, *, radius_m: float,
                     window_days: int) -> list[Candidate]:
    """Other items of the same topic received within the window that are in the bounding box
    of the radius around the item, or that have the same normalised address. The exact
    distance is checked by the caller; the box keeps this an index range scan."""
    near = []
    if item.latitude is not None and item.longitude is not None:
        lat_delta = radius_m / METRES_PER_DEGREE * BOX_MARGIN
        # Degrees of longitude shrink with latitude; the poles are not in Okha.
        lon_delta = lat_delta / max(math.cos(math.radians(item.latitude)), 0.01)
        near.append(and_(Item.latitude.between(item.latitude - lat_delta,
                                               item.latitude + lat_delta),
                         Item.longitude.between(item.longitude - lon_delta,
                                                item.longitude + lon_delta)))
    if item.place_key:
        near.append(Item.place_key == item.place_key)
    if not near:
        return []
    window = timedelta(days=window_days)
    rows = await session.execute(
        select(Item.id, Item.cluster_id, Item.latitude, Item.longitude, Item.place_key)
        .where(Item.topic == item.topic, Item.id != item.id,
               Item.received_at >= item.received_at - window,
               Item.received_at <= item.received_at + window, or_(*near))
        .order_by(Item.id))
    return [Candidate(*row) for row in rows.all()]


async def join_cluster(session: AsyncSession, item: Item, neighbours: list[Candidate], *,
                       label: str, now: datetime) -> Cluster:
    """Put the item and its neighbours into one cluster: the oldest of theirs, merging the
    others into it, or a new one."""
    ids = sorted({n.cluster_id for n in neighbours if n.cluster_id is not None})
    if ids:
        target = await session.get(Cluster, ids[0])
        assert target is not None
        merged = list((await session.scalars(
            select(Cluster).where(Cluster.id.in_(ids[1:])))).all()) if ids[1:] else []
        if merged:
            await session.execute(update(Item).where(Item.cluster_id.in_(ids[1:]))
                                  .values(cluster_id=target.id))
            # A merged cluster that was announced stays announced: no second alert.
            marks = [c.alerted_at for c in [target, *merged] if c.alerted_at is not None]
            target.alerted_at = min(marks) if marks else None
            for cluster in merged:
                await session.delete(cluster)
    else:
        target = Cluster(topic=item.topic, label=label[:300], created_at=now)
        session.add(target)
        await session.flush()
    loose = [n.id for n in neighbours if n.cluster_id is None]
    if loose:
        await session.execute(update(Item).where(Item.id.in_(loose))
                              .values(cluster_id=target.id))
    item.cluster_id = target.id
    await session.flush()
    return target


async def cluster_size(session: AsyncSession, cluster_id: int) -> int:
    return int(await session.scalar(
        select(func.count()).select_from(Item).where(Item.cluster_id == cluster_id)) or 0)
