"""Clusters of repeated problems ("первопричины") and the press alert «резонансная тема».

Two items are *linked* when they have the same topic, were received within
`[analytics] cluster_window_days` of each other, and either both have coordinates no farther
apart than `cluster_radius_m` (haversine) or both have the same normalised address. A cluster
is a group of linked items (single linkage: a chain of links). Each item joins its cluster when
it is registered (`after_registration`); a cluster that reaches `cluster_min_items` is
announced to the press service once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.context import Services
from handlers.events import Reply
from handlers.formatting import local_date
from handlers.i18n import Translator
from handlers.messaging import tell
from handlers.org import Role
from handlers.recipients import staff_ids_with_role
from storage.clusters import Candidate, candidates, cluster_size, join_cluster
from storage.models import Account, Cluster, Item
from storage.stats import Period, StatsQuery, section_stats

EARTH_RADIUS_M = 6_371_000.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle distance in metres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


# ---------------------------------------------------------------------------------------------
# Addresses: «г. Оха, ул. Ленина, д. 12а, кв. 3», «улица Ленина 12 А» and «Ленина, дом 12-а»
# are one place: «ленина 12а».

_APARTMENT = re.compile(r"\b(?:кв|квартира|комн|комната|оф|офис)\b\.?\s*№?\s*\d+\s*[а-я]?\b")
_POSTCODE = re.compile(r"\b\d{6}\b")
_PUNCTUATION = re.compile(r"[.,;:!?«»\"'()\[\]№#*_]+")
# The default street type is dropped (people often leave it out); the others are kept short.
_STREET_TYPES = (
    (re.compile(r"\b(?:улица|ул)\b"), " "),
    (re.compile(r"\b(?:проспект|просп|пр-т)\b"), " пр "),
    (re.compile(r"\b(?:переулок|пер)\b"), " пер "),
    (re.compile(r"\b(?:площадь|пл)\b"), " пл "),
    (re.compile(r"\b(?:микрорайон|мкрн|мкр)\b"), " мкр "),
    (re.compile(r"\b(?:бульвар|б-р)\b"), " бул "),
    (re.compile(r"\b(?:шоссе)\b"), " ш "),
    (re.compile(r"\b(?:проезд|пр-д)\b"), " проезд "),
    (re.compile(r"\b(?:набережная|наб)\b"), " наб "),
)
# The town, the district, the region and the word «дом» say nothing about the place in Okha.
_NOISE = re.compile(r"\b(?:россия|рф|сахалинская|область|обл|охинский|городской|округ|го|"
                    r"район|р-н|город|гор|г|оха|дом|д)\b")
_BUILDING = ((re.compile(r"\b(?:корпус|корп)\b"), " к "), (re.compile(r"\b(?:строение|стр)\b"),
                                                           " с "))
# «12 а», «12-а», «12/а», «12А» → «12а» (a letter right after the house number).
_HOUSE_LETTER = re.compile(r"\b(\d+)\s*[-/]?\s*([а-я])\b")


def normalise_address(address: str | None) -> str | None:
    """A comparable form of an address, or None when nothing place-like is left."""
    if not address:
        return None
    text = address.lower().replace("ё", "е")
    text = _APARTMENT.sub(" ", text)  # a building is the place (and a flat is personal data)
    text = _POSTCODE.sub(" ", text)
    text = _PUNCTUATION.sub(" ", text)
    for pattern, replacement in (*_STREET_TYPES, *_BUILDING):
        text = pattern.sub(replacement, text)
    text = _NOISE.sub(" ", text)
    text = _HOUSE_LETTER.sub(r"\1\2", text)
    text = re.sub(r"\s*-\s*", " ", text)
    key = " ".join(text.split())
    return key[:200] if re.search(r"[а-яa-z]", key) else None


def place_label(item: Item) -> str:
    """What the cluster is called: the normalised address, or the coordinates. Never the
    citizen's own words (they may hold personal data)."""
    if item.place_key:
        return item.place_key
    if item.latitude is not None and item.longitude is not None:
        return f"{item.latitude:.5f}, {item.longitude:.5f}"
    return "—"


def linked(item: Item, other: Candidate, radius_m: float) -> bool:
    if (item.latitude is not None and item.longitude is not None
            and other.latitude is not None and other.longitude is not None
            and haversine_m(item.latitude, item.longitude, other.latitude,
                            other.longitude) <= radius_m):
        return True
    return bool(item.place_key) and item.place_key == other.place_key


# ---------------------------------------------------------------------------------------------

async def track_item(session: AsyncSession, services: Services, item: Item) -> Cluster | None:
    """Join the item to its cluster. Returns the cluster if it has just reached the threshold
    and was never announced; it is marked announced, so the caller alerts exactly once."""
    settings = services.org.analytics
    item.place_key = normalise_address(item.address)
    found = await candidates(session, item, radius_m=settings.cluster_radius_m,
                             window_days=settings.cluster_window_days)
    neighbours = [c for c in found if linked(item, c, settings.cluster_radius_m)]
    if not neighbours:
        return None
    cluster = await join_cluster(session, item, neighbours, label=place_label(item),
                                 now=services.now())
    if cluster.alerted_at is not None:
        return None
    if await cluster_size(session, cluster.id) < settings.cluster_min_items:
        return None
    cluster.alerted_at = services.now()
    return cluster


async def alert_press(session: AsyncSession, services: Services, cluster: Cluster) -> int:
    """«Резонансная тема» to each press account, queued in the caller's transaction: the
    topic, the place and how many reports, never who wrote them. Returns the messages queued."""
    org, tz = services.org, services.tz
    size, first, last = (await session.execute(
        select(func.count(), func.min(Item.received_at), func.max(Item.received_at))
        .where(Item.cluster_id == cluster.id))).one()

    async def render(t: Translator, account: Account) -> Sequence[Reply]:
        text = t("press.resonant_topic", topic=org.topic_by_id[cluster.topic].label(t.locale),
                 place=cluster.label, count=size, since=local_date(first, tz),
                 until=local_date(last, tz))
        return [Reply(text, title=t("press.resonant_topic.title"))]

    queued = await tell(session, services, await staff_ids_with_role(session, Role.PRESS),
                        render)
    if queued:
        services.on_outbox()
    return queued


async def track_and_alert(session: AsyncSession, services: Services, item: Item) -> None:
    """For any registration path (chat, operator, file import): join the item to its cluster
    and announce a cluster that has just become resonant."""
    cluster = await track_item(session, services, item)
    if cluster is not None:
        await alert_press(session, services, cluster)


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepeatedProblem:
    cluster_id: int
    topic: str
    label: str
    count: int
    open_count: int


async def repeated_problems(session: AsyncSession, services: Services, period: Period, *,
                            block_scope: str | None = None) -> list[RepeatedProblem]:
    """Clusters with at least `cluster_min_items` items created in the period, the largest
    first (for the daily summary and the «Повторяющиеся проблемы» section)."""
    groups = await section_stats(session, StatsQuery(
        group_by="cluster", metrics=("count", "open_count"), period=period,
        block_scope=block_scope, min_cluster_items=services.org.analytics.cluster_min_items),
        tz=services.tz, now=services.now())
    ids = [int(g.key) for g in groups if g.key is not None]
    clusters = {c.id: c for c in (await session.scalars(
        select(Cluster).where(Cluster.id.in_(ids)))).all()} if ids else {}
    return [RepeatedProblem(int(g.key), clusters[int(g.key)].topic, clusters[int(g.key)].label,
                            int(g.values["count"] or 0), int(g.values["open_count"] or 0))
            for g in groups if g.key is not None and int(g.key) in clusters]
